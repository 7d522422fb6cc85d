"""Does history set the cost of a day? The same customers with short and long histories, day after day.

Issue 8's check, as a script: for each history length (`--days 100,800`) the sample generator writes
the same number of customers ending on the same date, then `loyalty run --date D` runs for each of
`--dates` in order on fresh storage, warehouse (SQLite) and Dagster home — the first date builds the
source store and the carried state from history, the later ones are the days that should cost what
the day brought. Each run is its own process (`bench_pipeline.run_measured`: CPU s from `os.wait4`,
peak RSS of the process tree polled every 50 ms); each Dagster step's wall seconds come from the run
storage and its peak from the RSS samples inside the step (steps run in one process, so a step's
peak includes what earlier steps left). The table reports, per date after the first, the longest
history's CPU and peak over the shortest's (target: ≤ 1.2×).

    python -m loyalty_assets.bench_history --customers 1000000 --days 100,800
    python -m loyalty_assets.bench_history --customers 5000 --days 100,400 --dates 2025-06-25,2025-06-26

Results go to `bench/results/history-latest.md` and `.json`. Never a timed test: `tests/test_bench_history.py`
checks the table and ratios on hand-made runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from datetime import date
from importlib.metadata import version
from pathlib import Path
from typing import Any

from loyalty_assets.bench import PROJECT_ROOT
from loyalty_assets.bench_pipeline import _child, run_measured

DEFAULT_OUT = PROJECT_ROOT / "bench" / "results" / "history-latest.md"
DEFAULT_DATES = (date(2025, 6, 25), date(2025, 6, 26), date(2025, 6, 27))
END_DATE = date(2025, 6, 30)
RATIO_TARGET = 1.2
_MB = 2**20


def generate(customers: int, days: int, out: Path) -> None:
    """The sample generator's data for `customers` × `days` ending on `END_DATE` (kept when present)."""
    if (out / "customers.parquet").exists():
        return
    command = [sys.executable, "-m", "loyalty_assets.sample_data", "--out", str(out), "--customers", str(customers)]
    command += ["--days", str(days), "--end-date", END_DATE.isoformat(), "--no-progress"]
    subprocess.run(command, check=True, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL)


def history_runs(data_dir: Path, dates: Sequence[date], work: Path) -> list[dict[str, Any]]:
    """`loyalty run --date d` for each of `dates` on fresh places; each run with its steps' wall and peak."""
    if work.exists():  # a reused --work-dir: the first date must find an empty store and warehouse
        shutil.rmtree(work)
    work.mkdir(parents=True)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "LOYALTY_DATA_DIR": str(data_dir),
        "LOYALTY_DATABASE_URL": f"sqlite:///{work / 'warehouse.db'}",
        "LOYALTY_STORAGE_DIR": str(work / "storage"),
        "DAGSTER_HOME": str(work / "dagster"),
    }
    runs: list[dict[str, Any]] = []
    samples: dict[str, list[tuple[float, int]]] = {}
    for d in dates:
        command = [sys.executable, "-m", "loyalty_assets.cli", "run", "--date", d.isoformat()]
        samples[d.isoformat()] = []
        run = run_measured(command, env, work / f"run-{d.isoformat()}.log", samples[d.isoformat()])
        run["date"] = d.isoformat()
        runs.append(run)
        print(f"    {data_dir.name} {d}: exit {run['exit']}, {run['cpu_s']:.1f} CPU s", file=sys.stderr, flush=True)
        if run["exit"] != 0:
            break
    times = _child(["--child", "dagster-step-times", str(work / "dagster")])
    for run in runs:
        run["steps"] = step_figures(times.get(run["date"], []), samples[run["date"]])
    return runs


def step_figures(times: Sequence[Sequence[Any]], samples: Sequence[tuple[float, int]]) -> list[dict[str, Any]]:
    """Per step (key, start, end): its wall seconds and the largest RSS sampled while it ran (MB)."""
    out = []
    for key, start, end in times:
        inside = [rss for at, rss in samples if start <= at <= end]
        out.append({"step": key, "wall_s": end - start, "peak_mb": max(inside, default=0) / _MB})
    return out


def ratios(results: dict[int, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per date after the first: the longest history's CPU s and peak over the shortest's."""
    if len(results) < 2:
        return []
    short, long = results[min(results)], results[max(results)]
    by_date = {r["date"]: r for r in long}
    out = []
    for run in short[1:]:
        other = by_date.get(run["date"])
        if other is None or run["exit"] or other["exit"]:
            continue
        out.append(
            {
                "date": run["date"],
                "cpu": other["cpu_s"] / run["cpu_s"],
                "peak": other["peak_rss_mb"] / run["peak_rss_mb"],
            }
        )
    return out


def machine() -> str:
    """One line that makes the figures interpretable on another machine."""
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3 if hasattr(os, "sysconf") else 0
    return (
        f"Machine: {os.cpu_count()} cores, {ram:.0f} GiB RAM, {platform.system()} {platform.machine()}; "
        f"Python {platform.python_version()}, Polars {version('polars')}, Dagster {version('dagster')}."
    )


def render_markdown(customers: int, results: dict[int, list[dict[str, Any]]]) -> str:
    lines = [
        f"# Cost of a day against the length of history — {customers:,} customers, SQLite",
        "",
        machine(),
        "",
        "| history (days) | date | exit | CPU s | wall s | peak RSS MB | steps: wall s / peak MB |",
        "|---:|---|---:|---:|---:|---:|---|",
    ]
    for days in sorted(results):
        for run in results[days]:
            steps = ", ".join(f"`{s['step']}` {s['wall_s']:.1f} / {s['peak_mb']:,.0f}" for s in run.get("steps", []))
            lines.append(
                f"| {days} | {run['date']} | {run['exit']} | {run['cpu_s']:.1f} | {run['wall_s']:.1f} | "
                f"{run['peak_rss_mb']:,.0f} | {steps} |"
            )
    found = ratios(results)
    if found:
        lines += ["", f"Longest over shortest history (target ≤ {RATIO_TARGET}×):", ""]
        lines += [f"- {r['date']}: CPU {r['cpu']:.2f}×, peak RSS {r['peak']:.2f}×" for r in found]
    return "\n".join(lines) + "\n"


def run_benchmark(
    customers: int, days: Sequence[int], dates: Sequence[date], data_root: Path, work: Path
) -> dict[int, list[dict[str, Any]]]:
    results: dict[int, list[dict[str, Any]]] = {}
    for n_days in days:
        data_dir = data_root / f"{customers}x{n_days}"
        generate(customers, n_days, data_dir)
        results[n_days] = history_runs(data_dir, dates, work / f"{n_days}-days")
    return results


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loyalty_assets.bench_history", description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--days", type=lambda s: [int(x) for x in s.split(",")], default=[100, 800])
    parser.add_argument(
        "--dates", type=lambda s: [date.fromisoformat(x) for x in s.split(",")], default=list(DEFAULT_DATES)
    )
    parser.add_argument("--data-root", type=Path, default=PROJECT_ROOT / ".loyalty" / "bench" / "history")
    parser.add_argument("--work-dir", type=Path, default=None, help="warehouses, stores and logs (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return parser.parse_args(argv)


def main(
    argv: Sequence[str] | None = None, *, runner: Callable[..., dict[int, list[dict[str, Any]]]] = run_benchmark
) -> int:
    """Exit 1 when a run failed."""
    args = _parse_args(argv)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench_history_"))
    results = runner(args.customers, args.days, args.dates, args.data_root, work)
    text = render_markdown(args.customers, results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps({str(k): v for k, v in results.items()}, indent=1, default=str))
    print(text)
    return 1 if any(r["exit"] for runs in results.values() for r in runs) else 0


if __name__ == "__main__":
    raise SystemExit(main())
