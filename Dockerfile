# jimeng-server in a slim image: non-root, the task store on a volume, a health check on /healthz.
# Released images (.github/workflows/release.yml, linux/amd64 + linux/arm64): ghcr.io/<owner>/jimeng-server.
#   docker build -t jimeng-server .
#   docker run -p 5100:5100 -v jimeng-data:/data jimeng-server            (add --simulate to try it offline)
# Settings: mount a config file and point JIMENG_CONFIG at it, or use the environment overrides
# JIMENG_HOST, JIMENG_PORT, JIMENG_STORE_PATH, JIMENG_STORE_URL (a postgresql:// URL for several replicas),
# JIMENG_WEBHOOK_SECRET (see README).

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY jimeng_server ./jimeng_server
RUN pip install --no-cache-dir --disable-pip-version-check --prefix=/install '.[postgres,secrets]'

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    JIMENG_HOST=0.0.0.0 \
    JIMENG_PORT=5100 \
    JIMENG_STORE_PATH=/data/jimeng.db
RUN groupadd --system --gid 10001 jimeng \
    && useradd --system --uid 10001 --gid jimeng --home-dir /data --no-create-home --shell /usr/sbin/nologin jimeng \
    && mkdir -p /data/results \
    && chown -R jimeng:jimeng /data
COPY --from=build /install /usr/local
USER jimeng
WORKDIR /data
# One volume for everything that must outlive the container: the task store (tasks, pending webhooks, the pool)
# and, when results are kept as files, /data/results.
VOLUME ["/data"]
EXPOSE 5100
# Loopback, never through a proxy from the environment; any answer but 2xx (or no answer) is unhealthy.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD python -c "import os, urllib.request as u; u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:' + os.environ.get('JIMENG_PORT', '5100') + '/healthz', timeout=4)" || exit 1
ENTRYPOINT ["jimeng-server"]
