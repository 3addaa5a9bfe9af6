"""First-page latency of every web viewer view on a store of 1,000,000 facts.

    .venv/bin/python bench/web_latency.py [--facts N] [--db PATH]

Builds (once; reused when PATH exists) an SQLite store of N facts: 10,000 sensors
with a numeric field written many times each (half the facts) and users with five
fields each (the other half, so some 100,000 namespaces), then serves it with uvicorn
on a free port and times, over real HTTP, the first request of each API view on a
freshly opened store (cold: nothing loaded yet), then the median of five more (warm).
Not a test: numbers for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import uvicorn

from everstore import Sqlite3, Store
from everstore.web import create_app

SENSORS = 10_000
USER_FIELDS = ("email", "name", "age", "plan", "active")


def build(path: Path, facts: int) -> None:
    per_sensor = max(facts // 2 // SENSORS, 1)
    users = (facts - per_sensor * SENSORS) // len(USER_FIELDS)
    with Store(Sqlite3(path)) as store:
        for round_ in range(per_sensor):
            with store.transaction():
                for i in range(SENSORS):
                    store.storage("sensors", f"s{i:05}").temp = 20.0 + (i + round_) % 17
        step = 10_000
        for start in range(0, users, step):
            with store.transaction():
                for i in range(start, min(start + step, users)):
                    user = store.storage("users", f"u{i:06}")
                    user.email = f"u{i}@example.com"
                    user.name = f"user {i}"
                    user.age = 20 + i % 50
                    user.plan = "free" if i % 3 else "pro"
                    user.active = bool(i % 2)
        print(f"built {store.last_seq} facts in {path}")


VIEWS = [
    ("info", "/api/info", {}),
    ("namespaces", "/api/namespaces", {}),
    ("namespaces, search", "/api/namespaces", {"q": "u09999"}),
    ("namespaces, search finding nothing", "/api/namespaces", {"q": "nobody"}),
    ("namespaces as of seq 500000", "/api/namespaces", {"seq": 500000}),
    ("namespace", "/api/namespace", {"ns": ["users", "u000123"]}),
    ("namespace as of seq 500000", "/api/namespace", {"ns": ["sensors", "s00042"], "seq": 500000}),
    ("history (numeric, plotted)", "/api/history", {"ns": ["sensors", "s00042"], "field": "temp"}),
    ("log, newest page", "/api/log", {}),
    ("log, after a seq", "/api/log", {"after": 999_000}),
    ("diff under a prefix", "/api/diff", {"from": 100_000, "to": 900_000, "ns": ["sensors"]}),
    # the users' facts start at seq 500,001: the page ends after reading 20,000 facts
    ("diff, nothing in the first 20,000 facts", "/api/diff", {"to": 600_000, "ns": ["users"]}),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--facts", type=int, default=1_000_000)
    parser.add_argument("--db", type=Path, default=Path("/tmp/everstore-web-bench.db"))
    args = parser.parse_args()
    if not args.db.exists():
        started = time.perf_counter()
        build(args.db, args.facts)
        print(f"build took {time.perf_counter() - started:.1f} s")
    store = Store(Sqlite3(args.db))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(store), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    while not server.started:
        thread.join(0.02)
    print(f"store of {store.last_seq} facts; first page of each view over HTTP")
    print("| view | first request (cold) | warm, median of 5 |")
    print("|---|---:|---:|")
    for name, path, params in VIEWS:
        url = f"http://127.0.0.1:{port}{path}?{urllib.parse.urlencode(params, doseq=True)}"
        times = []
        for _ in range(6):
            started = time.perf_counter()
            with urllib.request.urlopen(url, timeout=600) as response:
                response.read()
            times.append((time.perf_counter() - started) * 1000)
        print(f"| {name} | {times[0]:.1f} ms | {statistics.median(times[1:]):.1f} ms |")
    server.should_exit = True
    thread.join()
    store.close()


if __name__ == "__main__":
    main()
