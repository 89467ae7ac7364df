"""`make bench`: every benchmark script in bench/ (bench_*.py), one after the other, each in its own process.

Each script writes its JSON to bench/results/ and, where it has one, its section of docs/performance.md.

    .venv/bin/python bench/run_all.py                         # every script at its default sizes
    .venv/bin/python bench/run_all.py --rows 1e6,1e7          # the scale benchmark at 1M and 10M rows only
    .venv/bin/python bench/run_all.py --only scale,store      # a subset (names without bench_ and .py)
    .venv/bin/python bench/run_all.py --quick                 # small sizes everywhere: a smoke run

The scale benchmark's default is 1M, 10M and 100M rows (it generates the files it lacks, about 1 GiB for
100M rows, and takes about half an hour on a 2-core machine); ``--rows`` chooses others.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
QUICK = {"--rows": "1e6", "--customers": "100000"}


def scripts() -> list[Path]:
    return sorted(p for p in BENCH.glob("bench_*.py") if p.is_file())


def accepts(script: Path, option: str) -> bool:
    """Whether ``script --help`` lists ``option``."""
    out = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120)
    return option in out.stdout


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", help="row counts for bench_scale.py, e.g. 1e6,1e7,1e8 (its default: all three)")
    p.add_argument("--customers", help="customers for the scripts that take --customers (their default otherwise)")
    p.add_argument("--only", help="comma-separated script names, e.g. scale,store")
    p.add_argument("--quick", action="store_true", help="small sizes: 1M rows, 100,000 customers")
    args = p.parse_args(argv)
    chosen = scripts()
    if args.only:
        wanted = {n.strip().removeprefix("bench_").removesuffix(".py") for n in args.only.split(",") if n.strip()}
        unknown = wanted - {s.stem.removeprefix("bench_") for s in chosen}
        if unknown:
            names = ", ".join(s.stem.removeprefix("bench_") for s in chosen)
            raise SystemExit(f"error: no benchmark named {', '.join(sorted(unknown))}; there are: {names}")
        chosen = [s for s in chosen if s.stem.removeprefix("bench_") in wanted]
    given = {"--rows": args.rows, "--customers": args.customers}
    if args.quick:
        given = {k: v or QUICK[k] for k, v in given.items()}
    results: list[tuple[str, int, float]] = []
    for script in chosen:
        cmd = [sys.executable, str(script)]
        for option, value in given.items():
            if value and accepts(script, option):
                cmd += [option, value]
        print(f"== {' '.join(cmd[1:])}", flush=True)
        t0 = time.perf_counter()
        code = subprocess.run(cmd, cwd=BENCH.parent).returncode
        results.append((script.name, code, time.perf_counter() - t0))
    for name, code, seconds in results:
        print(f"{name:28s} {'ok' if code == 0 else f'FAILED ({code})':12s} {seconds:8.1f} s")
    return 0 if all(code == 0 for _, code, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
