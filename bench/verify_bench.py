"""Verification's hashing rate (docs/integrity.md), against hashlib's own rate.

    .venv/bin/python bench/verify_bench.py                # 1,000,000 facts
    .venv/bin/python bench/verify_bench.py --facts 100000 # a quick run

Builds ``--facts`` facts in memory as an SQLite store reads them back (namespaces of 10
fields, a context per 100 facts, short data, a tombstone in 100), each its own commit
(the worst case: one link per fact), with their chain. Then times, best of
``--repeat``: :func:`everstore.integrity.verify_log` over them (encoding every fact and
recomputing every link), and the floor: hashlib's SHA-256 of the same bytes, already
encoded, once per fact and once per link, in a bare loop. A third row times commits of
100 facts. Prints a Markdown table (facts per second). The database read is not timed:
this measures hashing.
"""

from __future__ import annotations

import argparse
import hashlib
import struct
import time
from collections.abc import Callable

from everstore.integrity import GENESIS, batch_hash, chain_step, encode_fact, verify_log
from everstore.log import Fact


def make_facts(count: int) -> list[Fact]:
    facts = []
    when = 1_700_000_000.0
    for i in range(count):
        when += 0.000123
        data = None if i % 100 == 99 else f'{{"v": {i}, "s": "value {i}"}}'.encode()
        facts.append(
            Fact(i + 1, when, f"bench/obj{i // 10}", f"f{i % 10}", data, f"app.mod:{i // 100}")
        )
    return facts


def chain_of(facts: list[Fact], per: int) -> list[tuple[int, bytes]]:
    links = []
    link = GENESIS
    for start in range(0, len(facts), per):
        batch = facts[start : start + per]
        encoded = [encode_fact(f.namespace, f.field, f.context, f.data) for f in batch]
        link = chain_step(link, batch[0].seq, [f.time for f in batch], batch_hash(encoded))
        links.append((batch[-1].seq, link))
    return links


def best(repeat: int, run: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--facts", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    facts = make_facts(args.facts)
    single = chain_of(facts, 1)
    batched = chain_of(facts, 100)
    encoded = [encode_fact(f.namespace, f.field, f.context, f.data) for f in facts]
    step = struct.Struct(">QQd").pack
    sha = hashlib.sha256

    def floor() -> None:
        prev = GENESIS
        for i, raw in enumerate(encoded, 1):
            prev = sha(prev + step(i, 1, 0.5) + sha(raw).digest()).digest()

    def verify(links: list[tuple[int, bytes]]) -> None:
        report = verify_log(links, facts, len(facts))
        assert report.ok, report

    rows = [
        ("hashlib floor: SHA-256 of the encoded bytes, 2 per fact", best(args.repeat, floor)),
        ("verify_log, a commit per fact", best(args.repeat, lambda: verify(single))),
        ("verify_log, commits of 100 facts", best(args.repeat, lambda: verify(batched))),
    ]
    print(f"{args.facts:,} facts, best of {args.repeat}\n")
    print("| what | seconds | facts/s |")
    print("|---|---:|---:|")
    for label, seconds in rows:
        print(f"| {label} | {seconds:.3f} | {args.facts / seconds:,.0f} |")


if __name__ == "__main__":
    main()
