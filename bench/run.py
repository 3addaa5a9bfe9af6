"""Benchmarks: everstore against appendmuch 0.3.0 and raw SQLite, in one run.

    .venv/bin/python bench/run.py            # full sizes (what docs/benchmarks.md shows)
    .venv/bin/python bench/run.py --quick    # tiny sizes: a smoke test, numbers mean nothing

Method (the same as appendmuch's own baseline, see docs/benchmarks.md):

* every (family, library) case runs in a fresh interpreter, so its peak RSS is its own;
* inside it, each measurement repeats its workload, with fresh untimed setup, until at
  least ``--min-time`` seconds (0.5 s) were timed, and reports time per operation;
* that is one repetition; repetitions of the libraries alternate (everstore,
  appendmuch, raw, everstore, ...) so that drift on a noisy machine hits all of them,
  and the table shows the median of ``--reps`` (3) repetitions;
* cold open: every sample is a new process that imports the library, opens the cached
  file and reads one field; a repetition takes samples until ``--min-time`` seconds
  of opening were timed (at most 10) and reports their mean.

Results go to stdout as a Markdown table and to ``bench/results/latest.json``
(``quick.json`` for ``--quick``, so a smoke run never overwrites real numbers).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"

sys.path.insert(0, str(HERE))

import workloads  # noqa: E402  (bench/ is not a package)

#: family -> libraries, in the order their repetitions alternate
FAMILIES: dict[str, list[str]] = {
    "writes_memory": ["everstore", "appendmuch"],
    "writes_sqlite": ["everstore", "appendmuch", "raw"],
    "reads_memory": ["everstore", "appendmuch"],
    "reads_sqlite": ["everstore", "appendmuch"],
    "history": ["everstore", "appendmuch"],
    "within": ["everstore", "appendmuch"],
    "cold_open": ["everstore", "appendmuch"],
    "list_sqlite": ["everstore", "appendmuch"],
    "list_memory": ["everstore", "appendmuch"],
}

COLD_MAX_SAMPLES = 10
TABLE_HEADER = (
    "| # | workload | unit | everstore | appendmuch | raw sqlite | vs appendmuch | vs raw "
    "| goal | result |"
)


# -- goals and rows --------------------------------------------------------------------


@dataclass(frozen=True)
class Goal:
    """One stated goal. Every metric is lower-is-better, so ratios are other / everstore."""

    kind: str  # "appendmuch" (ratio >= x), "raw" (ratio >= x) or "below" (everstore < x)
    threshold: float

    def label(self) -> str:
        if self.kind == "below":
            return f"< {self.threshold:g}"
        return f"≥ {self.threshold:g}x {'am' if self.kind == 'appendmuch' else 'raw'}"

    def check(self, es: float | None, am: float | None, raw: float | None) -> str:
        if es is None:
            return "n/a"
        if self.kind == "below":
            return "PASS" if es < self.threshold else "MISS"
        other = am if self.kind == "appendmuch" else raw
        if other is None:
            return "n/a"
        return "PASS" if other / es >= self.threshold else "MISS"


AM3 = Goal("appendmuch", 3.0)

Ref = tuple[str, str]  # (case, metric)


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    unit: str
    es: Ref
    am: Ref | None = None
    raw: Ref | None = None
    goals: tuple[Goal, ...] = ()


ROWS: list[Row] = [
    Row("1", "{writes} writes of an int, Memory", "µs/write",
        ("writes_memory/everstore", "write_us"), ("writes_memory/appendmuch", "write_us"),
        goals=(AM3,)),
    Row("2a", "write int, SQLite file: everstore commit per write; am buffered + flush;"
        " raw INSERT autocommit", "µs/write",
        ("writes_sqlite/everstore", "write_us"), ("writes_sqlite/appendmuch", "write_us"),
        ("writes_sqlite/raw", "write_us"), goals=(AM3, Goal("raw", 0.8))),
    Row("2b", "write int, SQLite file: everstore transaction of 100; am buffered + flush;"
        " raw executemany 100 in BEGIN/COMMIT", "µs/write",
        ("writes_sqlite/everstore", "txn100_us"), ("writes_sqlite/appendmuch", "write_us"),
        ("writes_sqlite/raw", "executemany100_us"), goals=(AM3, Goal("raw", 0.5))),
    Row("2c", "write int, SQLite file, on disk when the write returns: everstore commit per"
        " write; am write + flush(); raw INSERT autocommit", "µs/write",
        ("writes_sqlite/everstore", "write_us"), ("writes_sqlite/appendmuch", "flush_each_us"),
        ("writes_sqlite/raw", "write_us"), goals=(AM3,)),
    Row("3a", "read current value s.x, Memory", "µs/read",
        ("reads_memory/everstore", "read_us"), ("reads_memory/appendmuch", "read_us"),
        goals=(AM3, Goal("below", 0.5))),
    Row("3b", "read current value s.x, SQLite file", "µs/read",
        ("reads_sqlite/everstore", "read_us"), ("reads_sqlite/appendmuch", "read_us"),
        goals=(AM3, Goal("below", 0.5))),
    Row("4a", "history of {history} values: s.__history__()['x'] / s.history()['x']", "ms/call",
        ("history/everstore", "get_ms"), ("history/appendmuch", "get_ms"), goals=(AM3,)),
    Row("4b", "history of {history} values: [v.data for v in ...['x']]", "ms/call",
        ("history/everstore", "iterate_ms"), ("history/appendmuch", "iterate_ms"),
        goals=(AM3,)),
    Row("5a", "within(round=k).score, namespace of {within} writes, random k", "ms/query",
        ("within/everstore", "query_ms"), ("within/appendmuch", "query_ms"), goals=(AM3,)),
    Row("5b", "within: first query (everstore builds its value index)", "ms",
        ("within/everstore", "first_query_ms"), ("within/appendmuch", "first_query_ms")),
    Row("6a", "cold open of a {cold}-fact SQLite file + first read of a field", "s",
        ("cold_open/everstore", "open_read_s"), ("cold_open/appendmuch", "open_read_s"),
        goals=(AM3,)),
    Row("6b", "cold open: peak RSS of the process (ru_maxrss)", "MiB",
        ("cold_open/everstore", "rss_mib"), ("cold_open/appendmuch", "rss_mib")),
    Row("6c", "cold open: import of the library", "s",
        ("cold_open/everstore", "import_s"), ("cold_open/appendmuch", "import_s")),
    Row("7a", "list append in `with s:` up to {items} items, SQLite: average", "ms/append",
        ("list_sqlite/everstore", "append_ms"), ("list_sqlite/appendmuch", "append_ms"),
        goals=(AM3,)),
    Row("7b", "list append, SQLite: last 100 appends", "ms/append",
        ("list_sqlite/everstore", "last100_ms"), ("list_sqlite/appendmuch", "last100_ms"),
        goals=(AM3,)),
    Row("7c", "list append, SQLite: file growth per append", "bytes",
        ("list_sqlite/everstore", "bytes_per_append"),
        ("list_sqlite/appendmuch", "bytes_per_append")),
    Row("7d", "list append in `with s:` up to {items} items, Memory: average", "ms/append",
        ("list_memory/everstore", "append_ms"), ("list_memory/appendmuch", "append_ms"),
        goals=(AM3,)),
    Row("7e", "list append, Memory: last 100 appends", "ms/append",
        ("list_memory/everstore", "last100_ms"), ("list_memory/appendmuch", "last100_ms"),
        goals=(AM3,)),
]  # fmt: skip


# -- running cases in child processes ----------------------------------------------------


@dataclass
class Options:
    quick: bool
    reps: int
    min_time: float
    workdir: Path
    json_path: Path
    only: list[str]
    rebuild: bool


@dataclass
class CaseResult:
    reps: list[dict[str, float]] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)
    wall_s: list[float] = field(default_factory=list)

    def median(self) -> dict[str, float]:
        keys = sorted({key for rep in self.reps for key in rep})
        found = {key: statistics.median(rep[key] for rep in self.reps if key in rep)
                 for key in keys}  # fmt: skip
        if self.rss_mib:
            found["rss_mib"] = statistics.median(self.rss_mib)
        return found


class ChildFailed(RuntimeError):
    pass


def run_child(case: str, opts: Options) -> dict[str, Any]:
    """Run one case in a fresh interpreter; return its JSON report."""
    handle, out = tempfile.mkstemp(prefix="bench-", suffix=".json")
    os.close(handle)
    command = [
        sys.executable, str(Path(__file__).resolve()), "--child", case, "--out", out,
        "--min-time", repr(opts.min_time), "--workdir", str(opts.workdir),
    ]  # fmt: skip
    if opts.quick:
        command.append("--quick")
    # Children compile bytecode once into the work directory (never under src/): this
    # machine sets PYTHONDONTWRITEBYTECODE, which would make every import of the
    # editable everstore recompile its source while appendmuch's wheel has .pyc files.
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(opts.workdir / "pycache")
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            raise ChildFailed(
                f"{case} exited with {done.returncode}:\n{done.stdout}{done.stderr}".rstrip()
            )
        with open(out, encoding="utf-8") as handle_:
            report: dict[str, Any] = json.load(handle_)
        return report
    finally:
        os.remove(out)


def child_main(case: str, out: str, config: workloads.Config) -> int:
    import resource

    start = time.perf_counter()
    metrics = workloads.CASES[case](config)
    wall = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    with open(out, "w", encoding="utf-8") as handle:
        json.dump({"case": case, "metrics": metrics, "rss_mib": rss, "wall_s": wall}, handle)
    return 0


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_family(family: str, opts: Options, results: dict[str, CaseResult]) -> None:
    libraries = FAMILIES[family]
    if family == "cold_open":
        ensure_cold_files(opts)
    for rep in range(opts.reps):
        for library in libraries:
            case = f"{family}/{library}"
            result = results.setdefault(case, CaseResult())
            started = time.perf_counter()
            if family == "cold_open":
                metrics, rss = cold_open_repetition(case, opts)
                result.reps.append(metrics)
                result.rss_mib.extend(rss)
            else:
                report = run_child(case, opts)
                result.reps.append(report["metrics"])
                result.rss_mib.append(report["rss_mib"])
            elapsed = time.perf_counter() - started
            result.wall_s.append(elapsed)
            shown = ", ".join(f"{k}={v:.4g}" for k, v in result.reps[-1].items())
            progress(f"  {case} rep {rep + 1}/{opts.reps} ({elapsed:.1f} s): {shown}")


def cold_open_repetition(case: str, opts: Options) -> tuple[dict[str, float], list[float]]:
    samples: list[dict[str, float]] = []
    rss: list[float] = []
    limit = 2 if opts.quick else COLD_MAX_SAMPLES
    while len(samples) < limit and sum(s["open_read_s"] for s in samples) < opts.min_time:
        report = run_child(case, opts)
        samples.append(report["metrics"])
        rss.append(report["rss_mib"])
    metrics = {key: statistics.fmean(sample[key] for sample in samples) for key in samples[0]}
    metrics["samples"] = float(len(samples))
    return metrics, rss


def ensure_cold_files(opts: Options) -> None:
    config = workloads.Config(opts.quick, opts.min_time, opts.workdir)
    for library in FAMILIES["cold_open"]:
        path = workloads.cold_file(config, library)
        if path.exists() and not opts.rebuild:
            progress(f"  cold_open: using cached {path.name}")
            continue
        progress(f"  cold_open: building {path.name} (cached for later runs) ...")
        report = run_child(f"cold_build/{library}", opts)
        m = report["metrics"]
        progress(f"  cold_open: built in {m['build_s']:.1f} s, {m['bytes'] / 1e6:.1f} MB")


# -- the report ---------------------------------------------------------------------------


def git(*args: str) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    except OSError:
        return ""
    return done.stdout.strip()


def machine() -> dict[str, Any]:
    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "everstore": version("everstore"),
        "appendmuch": version("appendmuch"),
        "orjson": version("orjson"),
        "git_commit": git("rev-parse", "--short", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain", "--", "src")),
        "loadavg_start": os.getloadavg(),
    }


def fmt(value: float | None) -> str:
    if value is None:
        return "—"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def ratio(other: float | None, es: float | None) -> str:
    if other is None or es is None or es == 0:
        return "—"
    return f"{other / es:.2f}x" if other / es < 10 else f"{other / es:,.0f}x"


def human(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return f"{n:,}"


def table(
    medians: dict[str, dict[str, float]], sz: workloads.Sizes
) -> tuple[str, list[dict[str, Any]]]:
    names = {
        "writes": human(sz.writes),
        "history": human(sz.history),
        "within": human(sz.within),
        "cold": human(sz.cold_namespaces * sz.cold_fields * sz.cold_writes),
        "items": human(sz.list_items),
    }

    def get(ref: Ref | None) -> float | None:
        if ref is None:
            return None
        return medians.get(ref[0], {}).get(ref[1])

    lines = [TABLE_HEADER, "|---|---|---|--:|--:|--:|--:|--:|---|---|"]
    rows: list[dict[str, Any]] = []
    for row in ROWS:
        label = row.label.format(**names)
        es, am, raw = get(row.es), get(row.am), get(row.raw)
        if es is None and am is None and raw is None:
            continue
        goals = " ; ".join(goal.label() for goal in row.goals) or "—"
        verdicts = [goal.check(es, am, raw) for goal in row.goals]
        result = " ; ".join(verdicts) or "—"
        lines.append(
            f"| {row.key} | {label} | {row.unit} | {fmt(es)} | {fmt(am)} | {fmt(raw)} "
            f"| {ratio(am, es)} | {ratio(raw, es)} | {goals} | {result} |"
        )
        rows.append({
            "key": row.key, "label": label, "unit": row.unit,
            "everstore": es, "appendmuch": am, "raw": raw,
            "vs_appendmuch": None if am is None or not es else am / es,
            "vs_raw": None if raw is None or not es else raw / es,
            "goals": [goal.label() for goal in row.goals], "results": verdicts,
        })  # fmt: skip
    return "\n".join(lines), rows


def rss_table(results: dict[str, CaseResult]) -> str:
    lines = ["| case | peak RSS (MiB, median) | wall per repetition (s) |", "|---|--:|--:|"]
    for case, result in results.items():
        if result.rss_mib:
            lines.append(
                f"| {case} | {statistics.median(result.rss_mib):.0f} "
                f"| {statistics.median(result.wall_s):.1f} |"
            )
    return "\n".join(lines)


# -- command line -----------------------------------------------------------------------------


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument("--reps", type=int, help="repetitions per case (default 3; quick 1)")
    parser.add_argument(
        "--min-time", type=float, help="seconds timed per measurement (default 0.5; quick 0.02)"
    )
    parser.add_argument(
        "--workdir", type=Path, default=RESULTS, help="scratch files and cached cold-open files"
    )
    parser.add_argument("--json", type=Path, help="where to write the JSON results")
    parser.add_argument("--only", default="", help=f"comma-separated families of {list(FAMILIES)}")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the cold-open files")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    quick: bool = args.quick
    min_time: float = args.min_time if args.min_time is not None else (0.02 if quick else 0.5)
    workdir: Path = args.workdir.resolve()
    if args.child:
        return child_main(args.child, args.out, workloads.Config(quick, min_time, workdir))

    try:
        am_version = metadata.version("appendmuch")
    except metadata.PackageNotFoundError:
        am_version = None
    if am_version != "0.3.0":
        print(
            f"bench/run.py needs appendmuch 0.3.0 (found {am_version}); `make bench` installs it",
            file=sys.stderr,
        )
        return 2
    only = [name for name in args.only.split(",") if name]
    unknown = sorted(set(only) - set(FAMILIES))
    if unknown:
        print(f"unknown families {unknown}; choose from {list(FAMILIES)}", file=sys.stderr)
        return 2
    opts = Options(
        quick=quick,
        reps=args.reps if args.reps is not None else (1 if quick else 3),
        min_time=min_time,
        workdir=workdir,
        json_path=args.json or RESULTS / ("quick.json" if quick else "latest.json"),
        only=only,
        rebuild=args.rebuild,
    )
    opts.workdir.mkdir(parents=True, exist_ok=True)
    info = machine()
    sz = workloads.sizes(quick)
    families = [name for name in FAMILIES if not only or name in only]
    progress(
        f"everstore benchmarks ({'quick' if quick else 'full'}): {opts.reps} repetition(s), "
        f"≥{min_time:g} s timed per measurement, families: {', '.join(families)}"
    )
    started = time.perf_counter()
    results: dict[str, CaseResult] = {}
    failures: list[str] = []
    for family in families:
        progress(f"{family}:")
        try:
            run_family(family, opts, results)
        except ChildFailed as exc:
            failures.append(str(exc))
            progress(f"  FAILED: {exc}")
    total = time.perf_counter() - started
    info["loadavg_end"] = os.getloadavg()
    info["git_commit_end"] = git("rev-parse", "--short", "HEAD")
    info["git_dirty_end"] = bool(git("status", "--porcelain", "--", "src"))
    medians = {case: result.median() for case, result in results.items() if result.reps}
    text, rows = table(medians, sz)

    print(
        f"everstore {info['everstore']} (git {info['git_commit']}"
        f"{', src modified' if info['git_dirty'] else ''}) vs appendmuch {info['appendmuch']}"
        f" | Python {info['python']}, SQLite {info['sqlite']}, {info['nproc']} CPUs"
        f" | load {info['loadavg_start'][0]:.2f} -> {info['loadavg_end'][0]:.2f}"
    )
    print(
        f"mode {'quick' if quick else 'full'}: median of {opts.reps} repetition(s), each "
        f"≥{min_time:g} s timed, one fresh process per case; sizes: {sz.writes:,} writes, "
        f"{sz.history:,}-value history, {sz.within:,} writes for within, "
        f"{sz.cold_namespaces * sz.cold_fields * sz.cold_writes:,} facts for cold open, "
        f"{sz.list_items:,} list appends; total {total:.0f} s"
    )
    if (info["git_commit_end"], info["git_dirty_end"]) != (info["git_commit"], info["git_dirty"]):
        print(
            f"WARNING: src/ changed during the run (git {info['git_commit']} -> "
            f"{info['git_commit_end']}): cases may have measured different code"
        )
    print("Ratios: other / everstore time (or size); above 1x means everstore is better.")
    print()
    print(text)
    print()
    print(rss_table(results))
    for failure in failures:
        print(f"\nFAILED: {failure}")

    opts.json_path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "machine": info,
        "config": {
            "quick": quick, "reps": opts.reps, "min_time": min_time,
            "sizes": sz.__dict__, "families": families, "total_s": total,
        },
        "cases": {
            case: {"reps": result.reps, "median": medians.get(case),
                   "rss_mib": result.rss_mib, "wall_s": result.wall_s}
            for case, result in results.items()
        },
        "rows": rows,
        "failures": failures,
    }  # fmt: skip
    opts.json_path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    progress(f"results written to {opts.json_path}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
