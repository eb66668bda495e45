"""Every typed `web.AppKey` of the server app, in one place."""

from __future__ import annotations

from aiohttp import web

from ..clock import Clock
from ..config import Config
from ..jobs import Jobs
from ..net.fetcher import SafeFetcher
from ..services.accounts import AccountService
from ..services.apikeys import ApiKeys
from ..services.compositions import Compositions
from ..services.generation import Generation
from ..services.idempotency import IdempotencyKeys
from ..services.keeper import Keeper
from ..services.pool import AccountPool
from ..services.postedits import PostEdits
from ..services.replicas import Replicas
from ..services.result_links import ResultLinks
from ..services.retention import Retention
from ..services.settlement import TaskSettler
from ..services.task_costs import CostReconciler
from ..services.task_intake import TaskIntake
from ..services.task_queries import TaskQueries
from ..services.task_records import TaskRecords
from ..services.videos import VideoService
from ..store.base import Store
from ..upstream.client import JimengClient
from ..upstream.transport import SessionPool
from ..upstream.uploader import ImageUploader
from ..watcher import Watcher
from ..webhooks.processes import SenderProcesses
from ..webhooks.sender import WebhookSender

CONFIG = web.AppKey("config", Config)
CLOCK = web.AppKey("clock", Clock)
JOBS = web.AppKey("jobs", Jobs)  # the one owner of background jobs: each component runs in a scope of it
POOL = web.AppKey("pool", SessionPool)
CLIENT = web.AppKey("client", JimengClient)
ACCOUNTS = web.AppKey("accounts", AccountService)
WATCHER = web.AppKey("watcher", Watcher)
GENERATION = web.AppKey("generation", Generation)
STORE: web.AppKey[Store] = web.AppKey("store")
SETTLER = web.AppKey("settler", TaskSettler)
INTAKE = web.AppKey("intake", TaskIntake)
QUERIES = web.AppKey("queries", TaskQueries)
TASK_COSTS = web.AppKey("task_costs", CostReconciler)
TASK_RECORDS = web.AppKey("task_records", TaskRecords)  # what handlers read of the stored tasks
REPLICAS = web.AppKey("replicas", Replicas)  # only with a store shared by replicas (PostgreSQL)
RETENTION = web.AppKey("retention", Retention)
IDEMPOTENCY = web.AppKey("idempotency", IdempotencyKeys)
VIDEOS = web.AppKey("videos", VideoService)
FETCHER = web.AppKey("fetcher", SafeFetcher)
UPLOADER = web.AppKey("uploader", ImageUploader)
COMPOSITIONS = web.AppKey("compositions", Compositions)
WEBHOOKS = web.AppKey("webhooks", WebhookSender)
SENDERS = web.AppKey("webhook_sender_processes", SenderProcesses)  # only with [webhooks] processes
ACCOUNT_POOL = web.AppKey("account_pool", AccountPool)
API_KEYS = web.AppKey("api_keys", ApiKeys)
POSTEDITS = web.AppKey("postedits", PostEdits)  # upscale, outpaint, repair, interpolation
RESULT_LINKS = web.AppKey("result_links", ResultLinks)  # only with [results] keep = "resign"
KEEPER = web.AppKey("keeper", Keeper)  # only with [results] keep = "local"
