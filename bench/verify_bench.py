"""Verification's rate (docs/integrity.md), against hashlib's own rate.

    .venv/bin/python bench/verify_bench.py                # 1,000,000 facts
    .venv/bin/python bench/verify_bench.py --facts 100000 # a quick run

Builds ``--facts`` facts as an SQLite store reads them back (short data, a tombstone
in 100) in two shapes of names: *repeating* (1,000 namespaces of 10 fields, each field
written again and again, 50 code locations) and *all new* (each fact the first of its
namespace, field and code location: nothing for verification's cache of encoded
names). Each fact is its own commit (the worst case: a link per fact), with their
chain. Then times, best of ``--repeat``:

* the floors: hashlib's SHA-256 of the same bytes, already encoded, once per fact and
  once per link, in a bare loop; and Python's own loop of what any verifier of
  one-fact commits must do (unpack the row, find the names' bytes, hash the fact,
  hash the link, compare), with no bookkeeping;
* ``verify_log`` over them in memory (encoding every fact and recomputing every
  link): the hashing rate the issue's goal names;
* ``verify_log`` over commits of 100 facts;
* ``Store.verify()`` of a real SQLite file of the same facts, end to end (reading
  the rows too), and its floor: the raw ``sqlite3`` read of the same rows in pages,
  with no hashing.
"""

from __future__ import annotations

import argparse
import hashlib
import sqlite3
import struct
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from everstore import Sqlite3, Store
from everstore.backends.base import ChainedFact
from everstore.integrity import GENESIS, chain_step, fact_hash, fact_head, verify_log

Facts = list[tuple[int, float, str, str, bytes | None, str]]


def make_facts(count: int, repeating: bool) -> Facts:
    """The facts; a name that repeats is one str object, as the backends hand names
    out from their interning tables (so its hash is computed once)."""
    facts: Facts = []
    when = 1_700_000_000.0
    pool: dict[str, str] = {}
    for i in range(count):
        when += 0.000123
        data = None if i % 100 == 99 else f'{{"v": {i}, "s": "value {i}"}}'.encode()
        if repeating:
            names = (f"bench/obj{i % 1000}", f"f{i // 1000 % 10}", f"app.mod:{i // 100 % 50}")
        else:
            names = (f"bench/obj{i // 10}", f"f{i % 10}", f"app.mod:{i}")
        ns, fd, cx = (pool.setdefault(name, name) for name in names)
        facts.append((i + 1, when, ns, fd, data, cx))
    return facts


def chained(facts: Facts, per: int) -> list[ChainedFact]:
    out: list[ChainedFact] = []
    link = GENESIS
    for start in range(0, len(facts), per):
        batch = facts[start : start + per]
        hashes = [fact_hash(ns, fd, cx, data) for _, _, ns, fd, data, cx in batch]
        link = chain_step(link, batch[0][0], [f[1] for f in batch], hashes)
        out += [(*f, None) for f in batch[:-1]]
        out.append((*batch[-1], link))
    return out


def best(repeat: int, run: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def store_file(path: Path, facts: Facts) -> None:
    """A store of ``facts`` at ``path``, a commit each (the backend's single write:
    an import would make commits of many facts)."""
    with Store(Sqlite3(path)) as store:
        backend = store.backend
        for _, when, ns, fd, data, cx in facts:
            backend.append_one(ns, fd, data, cx, when)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--facts", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    facts = make_facts(args.facts, repeating=True)
    single = chained(facts, 1)
    batched = chained(facts, 100)
    unnamed = chained(make_facts(args.facts, repeating=False), 1)
    step = struct.Struct(">QQd").pack
    sha = hashlib.sha256
    raw_encoded = [
        b"\0" * (20 + len(ns) + len(fd) + len(cx) + len(data or b""))
        for _, _, ns, fd, data, cx in facts
    ]

    def floor() -> None:
        prev = GENESIS
        for i, raw in enumerate(raw_encoded, 1):
            prev = sha(prev + step(i, 1, 0.5) + sha(raw).digest()).digest()

    def python_floor() -> None:
        # What any Python verifier of one-fact commits does at the least: unpack the
        # row, find the names' bytes, the two SHA-256 calls, build the link's header,
        # compare. No bookkeeping for reports, deleted facts, commits or progress.
        heads: dict[tuple[str, str, str], bytes] = {}
        prev = GENESIS
        bad = 0
        for seq, when, ns, fd, data, cx, link in single:
            head = heads.get((ns, fd, cx))
            if head is None:
                head = heads[ns, fd, cx] = fact_head(ns, fd, cx)
            hashed = sha(head + data if data is not None else head).digest()
            if sha(prev + step(seq, 1, when) + hashed).digest() != link:
                bad += 1
            prev = link

    def verify(links: list[ChainedFact]) -> None:
        report = verify_log(links, len(facts))
        assert report.ok, report

    rows = [
        ("floor: hashlib's SHA-256 of the encoded bytes, 2 per fact", best(args.repeat, floor)),
        (
            "floor: Python's own loop of those calls, a commit per fact",
            best(args.repeat, python_floor),
        ),
        ("verify_log in memory, a commit per fact", best(args.repeat, lambda: verify(single))),
        (
            "verify_log in memory, a commit per fact, every fact's names new",
            best(args.repeat, lambda: verify(unnamed)),
        ),
        ("verify_log in memory, commits of 100 facts", best(args.repeat, lambda: verify(batched))),
    ]
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "verify.db"
        store_file(path, facts)
        with Store(Sqlite3(path)) as store:

            def verify_store() -> None:
                report = store.verify()
                assert report.ok and report.facts == len(facts), report

            rows.append(
                (
                    "Store.verify() of an SQLite file, a commit per fact",
                    best(args.repeat, verify_store),
                )
            )

        def raw_read() -> None:
            conn = sqlite3.connect(path)
            seq = 0
            while page := conn.execute(
                "SELECT seq, time, ns, field, ctx, data, link FROM everstore_log WHERE seq > ? "
                "ORDER BY seq LIMIT 20000",
                (seq,),
            ).fetchall():
                seq = page[-1][0]
            conn.close()

        rows.append(
            (
                "floor of the read: raw sqlite3 SELECT of the same rows, pages of 20,000",
                best(args.repeat, raw_read),
            )
        )
        rewrites = time_rewrites(path, len(facts))
    print(f"{args.facts:,} facts, best of {args.repeat}\n")
    print("| what | seconds | facts/s |")
    print("|---|---:|---:|")
    for label, seconds in rows:
        print(f"| {label} | {seconds:.3f} | {args.facts / seconds:,.0f} |")
    print("\n| rewrite, once on the same file | seconds |")
    print("|---|---:|")
    for label, seconds in rewrites:
        print(f"| {label} | {seconds:.3f} |")


def time_rewrites(path: Path, count: int) -> list[tuple[str, float]]:
    """One erasure of a namespace (a thousandth of the facts), then one prune of the
    first half of the log into an archive (each verifies or reads the whole log)."""
    with Store(Sqlite3(path)) as store:
        start = time.perf_counter()
        erased = store.erase(("bench", "obj7"), reason="bench")
        erase_s = time.perf_counter() - start
        start = time.perf_counter()
        kept = store.prune(before=count // 2, archive=path.with_name("archive.db"))
        prune_s = time.perf_counter() - start
        assert kept is not None and store.verify().ok
    return [
        (f"erase() of one namespace ({len(erased.erased):,} facts)", erase_s),
        (f"prune() of the first half ({kept.removed:,} facts removed, archived)", prune_s),
    ]


if __name__ == "__main__":
    main()
