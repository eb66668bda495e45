"""The poll → parse → settle path of one `get_history_by_ids` answer of 100 finished image tasks, in one process
(issue 27 item 2): what the server does with an answer before any store or HTTP work.

The answer is rendered and signed by the simulator's own code (`simulator.history.render_record`,
`simulator.links.sign_tree`: 4 images per task, `x-expires` URLs, image uris), wrapped in the `{"ret", "errmsg",
"data"}` envelope and encoded once. Timed per answer (best of `--repeat` rounds of `--number` calls each):

- decode: `jsonfast.loads` of the answer bytes;
- parse: `history.parse_record` of each of its 100 records;
- settle: per record the result refs the settler stores (`links.record_refs`, else `result_refs` on the raw
  record), the event body's `results` (`tasks.answer.result_item` per URL) and the sender's expiry check
  (`links.url_expiry` per URL, as `result_links.earliest_expiry` does); where `url_expiry` remembers URLs,
  its memory is cleared first in every round (each URL is read in full once, as in a server);
- store: the `raw_data` text the settle stores of each record (`store.rows.dump_json`);
- all: the four in a row.

    PYTHONPATH=. .venv/bin/python bench/parse_poll.py [--number 50] [--repeat 7] [--tasks 100] [--pure]

`--pure` decodes with the standard library, as a build without msgspec does.
For a before/after comparison run it alternately with PYTHONPATH on each checkout. Last line: JSON (µs per answer).
"""

from __future__ import annotations

import argparse
import json
import timeit
from collections.abc import Callable
from typing import Any

from jimeng_server import jsonfast
from jimeng_server.simulator.history import render_record
from jimeng_server.simulator.links import sign_tree
from jimeng_server.simulator.scripts import default_script
from jimeng_server.simulator.state import SimRecord
from jimeng_server.store.rows import dump_json
from jimeng_server.tasks.answer import result_item
from jimeng_server.upstream import links
from jimeng_server.upstream.history import HistoryRecord, parse_record

BASE = "http://127.0.0.1:8000"
SECRET = b"bench-secret"


def answer_bytes(tasks: int) -> bytes:
    """A `get_history_by_ids` answer with `tasks` finished 4-image records, as the simulator sends it."""
    data: dict[str, Any] = {}
    for n in range(tasks):
        hid = str(7_400_000_000_000_000 + n)
        script = default_script("image")
        record = SimRecord(hid, "session", "image", f"submit-{n}", "high_aes_general_v40", "a cat", script, 0.0)
        rendered = render_record(record, 10_000.0, 1.0, BASE, SECRET)
        signed = sign_tree(rendered, f"{BASE}/cdn/", SECRET, 1_767_225_600)
        for item in signed.get("item_list") or []:  # the simulator's own cover uri (links._with_uri_in_common)
            uri = item["image"]["large_images"][0].get("image_uri")
            if uri and isinstance(item.get("common_attr"), dict):
                item["common_attr"].setdefault("cover_uri", uri)
        data[hid] = signed
    return json.dumps({"ret": "0", "errmsg": "success", "data": data}, ensure_ascii=False).encode()


def refs_of(record: HistoryRecord) -> Any:
    reader = getattr(links, "record_refs", None)  # the checkout before item 2 has only result_refs
    return reader(record, "image") if reader is not None else links.result_refs(record.raw, "image")


def settle(records: list[HistoryRecord]) -> None:
    forget = getattr(links.url_expiry, "cache_clear", None)
    if forget is not None:  # every URL is new to the server once: its first read is a full one
        forget()
    for record in records:
        refs_of(record)
        urls = record.urls("image")
        [result_item(u) for u in urls]
        [links.url_expiry(u) for u in urls]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--number", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--pure", action="store_true", help="the standard library's codec (as without msgspec)")
    args = parser.parse_args()
    if args.pure:
        jsonfast._decode = jsonfast._encode = None
    body = answer_bytes(args.tasks)
    raws = list(jsonfast.loads(body)["data"].values())
    records = [parse_record(r) for r in raws]
    assert all(r.done and len(r.image_urls) == 4 for r in records)

    def store() -> None:
        [dump_json(r.raw) for r in records]

    def all_steps() -> None:
        parsed = [parse_record(r) for r in jsonfast.loads(body)["data"].values()]
        settle(parsed)
        [dump_json(r.raw) for r in parsed]

    steps: dict[str, Callable[[], object]] = {
        "decode": lambda: jsonfast.loads(body),
        "parse": lambda: [parse_record(r) for r in raws],
        "settle": lambda: settle(records),
        "store": store,
        "all": all_steps,
    }
    figures: dict[str, float] = {}
    fast = jsonfast._decode is not None
    for name, step in steps.items():
        best = min(timeit.repeat(step, number=args.number, repeat=args.repeat)) / args.number * 1e6
        figures[name] = round(best, 1)
    print(f"answer: {len(body)} bytes, {args.tasks} finished records of 4 images (msgspec: {fast})")
    for name, value in figures.items():
        print(f"  {name:7s} {value:10.1f} µs per answer")
    print(json.dumps({"tasks": args.tasks, "bytes": len(body), "fast": fast, **figures}))


if __name__ == "__main__":
    main()
