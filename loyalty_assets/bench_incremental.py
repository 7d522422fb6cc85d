"""Benchmark: the day after a first run, full recomputation against the incremental path.

Why it exists: today a daily run re-reads and re-validates all history and aggregates it again, so the
same day costs more the longer the history. The incremental path (validated source store +
per-customer purchase state) should cost what the day brought. This script measures, for the same
customers with different history lengths, one run date D (the day after a first run for D-1):

- `full`: `load_snapshot` over every source table (read, type, validate, cut) and `compute_features`
  for the purchase specs below: what the pipeline does today;
- `incremental`: `ingest_all` of the rows first visible on D (read with `read_visible`, the day's
  filter pushed into the Parquet scans) into the source store, then the purchase state of D-1 advanced
  with the checks that entered on D (`scan_entered`) and the features read from it;
- `first run` (for reference): ingesting history up to D-1 and building the state once.

Each step runs in its own subprocess, so its CPU seconds (user + system, psutil) and peak RSS
(`VmHWM`) are its own. The incremental features are compared with the full ones column by column and
the script fails when they differ.

    python -m loyalty_assets.bench_incremental [--customers 100000] [--days 100,800] [--work /tmp/bench_inc]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

RUN_DATE = date(2025, 6, 30)
PROGRAM_TZ = "Europe/Moscow"


def _specs() -> list[Any]:
    from loyalty_assets.config.filters import Window
    from loyalty_assets.transforms.features import FeatureSpec

    fields = ("purchase_count", "purchase_total", "average_check", "first_check_date", "last_check_date")
    windows = (None, Window(last_days=1), Window(last_days=30), Window(last_days=90))
    purchases = [FeatureSpec(f, window=w, category=c) for f in fields for w in windows for c in (None, "dairy")]
    return [
        *purchases,
        # bonus_balance / bonuses_expiring are FIFO lots (transforms.ledger.advance_lots), not sums
        FeatureSpec("bonuses_accrued", window=Window(last_days=30)),
        FeatureSpec("bonuses_redeemed", window=Window(last_days=90)),
        FeatureSpec("message_events", window=Window(last_days=30), event="opened"),
        FeatureSpec("message_events", window=Window(last_days=90), channel="email", event="clicked"),
        FeatureSpec("site_visits", window=Window(last_days=30)),
        FeatureSpec("site_visits", window=Window(last_days=30), category="dairy"),
    ]


#: Event tables and the feature family each feeds.
FAMILIES = {"bonus_transactions": "bonuses", "communications": "communications", "site_visits": "site_visits"}


def _measure(step: str, args: argparse.Namespace) -> dict[str, Any]:
    import psutil

    from loyalty_assets.bench import peak_rss_bytes

    proc = psutil.Process()
    wall = time.perf_counter()
    extra = STEPS[step](Path(args.data), Path(args.work), date.fromisoformat(args.day))
    cpu = proc.cpu_times()
    return {
        "step": step,
        "cpu_s": round(cpu.user + cpu.system, 2),
        "wall_s": round(time.perf_counter() - wall, 2),
        "peak_rss_mb": round(peak_rss_bytes() / 2**20, 1),
        **extra,
    }


def _full(data: Path, work: Path, day: date) -> dict[str, Any]:
    from loyalty_assets.sources.frames import AsOf
    from loyalty_assets.sources.readers import make_reader
    from loyalty_assets.sources.snapshot import load_snapshot
    from loyalty_assets.transforms.features import compute_features

    specs = _specs()
    snap = load_snapshot(make_reader(data, None), AsOf(day, PROGRAM_TZ), now=datetime.now(UTC))
    features = compute_features(snap.frames, AsOf(day, PROGRAM_TZ), specs)
    features.select("customer_id", *sorted({s.column for s in specs})).write_parquet(work / "full.parquet")
    return {"customers": features.height}


def _state_paths(work: Path, day: date) -> tuple[Path, Path, Path]:
    folder = work / "state"
    return folder / f"{day}.daily.parquet", folder / f"{day}.settled.parquet", folder / f"{day}.json"


def _save_state(work: Path, state: Any) -> None:
    daily, settled, meta = _state_paths(work, state.day)
    daily.parent.mkdir(parents=True, exist_ok=True)
    state.daily.write_parquet(daily)
    state.settled.write_parquet(settled)
    meta.write_text(json.dumps({"keys": state.keys, "fingerprint": state.fingerprint}), encoding="utf8")


def _load_state(work: Path, day: date) -> Any:
    import polars as pl

    from loyalty_assets.transforms.feature_state import PurchaseState

    daily, settled, meta = _state_paths(work, day)
    info = json.loads(meta.read_text(encoding="utf8"))
    keys = tuple(tuple(k) for k in info["keys"])
    return PurchaseState(day, keys, info["fingerprint"], pl.read_parquet(daily), pl.read_parquet(settled))


def _save_events(work: Path, states: dict[str, Any]) -> None:
    for table, st in states.items():
        folder = work / "state"
        st.daily.write_parquet(folder / f"{st.day}.{table}.daily.parquet")
        st.settled.write_parquet(folder / f"{st.day}.{table}.settled.parquet")
        st.expiring.write_parquet(folder / f"{st.day}.{table}.expiring.parquet")
        (folder / f"{st.day}.{table}.json").write_text(json.dumps({"fingerprint": st.fingerprint}), encoding="utf8")


def _load_events(work: Path, day: date) -> dict[str, Any]:
    import polars as pl

    from loyalty_assets.transforms.feature_state import EventState

    folder = work / "state"
    states = {}
    for table, family in FAMILIES.items():
        meta = json.loads((folder / f"{day}.{table}.json").read_text(encoding="utf8"))
        parts = [pl.read_parquet(folder / f"{day}.{table}.{k}.parquet") for k in ("daily", "settled", "expiring")]
        states[table] = EventState(day, family, meta["fingerprint"], *parts)
    return states


def _advance_events(store: Any, states: dict[str, Any], day: date, customers: Any, categories: Any) -> dict[str, Any]:
    from loyalty_assets.transforms.feature_state import advance_events, ledger_rows

    out = {}
    for table, st in states.items():
        rows = store.scan_entered(table, day)
        if table == "bonus_transactions":
            rows = ledger_rows(rows)
        out[table] = advance_events(
            st, day, rows, customers=customers, categories=categories, specs=_specs(), program_tz=PROGRAM_TZ
        )
    return out


def _first_run(data: Path, work: Path, day: date) -> dict[str, Any]:
    """History up to `day` - 1 into an empty store, and the purchase state built from it once."""
    from loyalty_assets.sources.store import SourceStore, ingest_all, read_visible
    from loyalty_assets.transforms.feature_state import build_state

    first = day - timedelta(days=1)
    shutil.rmtree(work / "store", ignore_errors=True)
    shutil.rmtree(work / "state", ignore_errors=True)
    store = SourceStore(work / "store", PROGRAM_TZ)
    ingest_all(
        store,
        lambda t: read_visible(data, t, first, program_tz=PROGRAM_TZ, history=True),
        first,
        now=datetime.now(UTC),
        history=True,
    )
    state = build_state(
        first,
        store.scan_as_of("checks", first).collect(),
        store.scan_as_of("check_items", first).collect(),
        customers=store.scan_as_of("customers", first).collect(),
        categories=store.scan_as_of("categories", first).collect(),
        specs=_specs(),
        program_tz=PROGRAM_TZ,
    )
    _save_state(work, state)
    from loyalty_assets.transforms.feature_state import advance_events, empty_event_state, ledger_rows

    customers = store.scan_as_of("customers", first).collect()
    categories = store.scan_as_of("categories", first).collect()
    events = {}
    for table, family in FAMILIES.items():
        rows = store.scan_as_of(table, first).collect()
        events[table] = advance_events(
            empty_event_state(family, first - timedelta(days=1), _specs(), categories),
            first,
            ledger_rows(rows) if table == "bonus_transactions" else rows,
            customers=customers,
            categories=categories,
            specs=_specs(),
            program_tz=PROGRAM_TZ,
        )
    _save_events(work, events)
    size = sum(p.stat().st_size for p in (work / "store").rglob("*") if p.is_file())
    return {"store_mb": round(size / 2**20, 1)}


def _incremental(data: Path, work: Path, day: date) -> dict[str, Any]:
    from loyalty_assets.sources.store import SourceStore, ingest_all, read_visible
    from loyalty_assets.transforms.feature_state import advance, purchase_features

    store = SourceStore(work / "store", PROGRAM_TZ)
    results = ingest_all(store, lambda t: read_visible(data, t, day, program_tz=PROGRAM_TZ), day, now=datetime.now(UTC))
    customers = store.scan_as_of("customers", day).select("customer_id", "timezone").collect()
    state = advance(
        _load_state(work, day - timedelta(days=1)),
        day,
        store.scan_entered("checks", day),
        store.scan_entered("check_items", day),
        customers=customers,
        categories=store.scan_as_of("categories", day).collect(),
        specs=_specs(),
        program_tz=PROGRAM_TZ,
    )
    _save_state(work, state)
    from loyalty_assets.transforms.feature_state import event_features

    categories = store.scan_as_of("categories", day).collect()
    events = _advance_events(store, _load_events(work, day - timedelta(days=1)), day, customers, categories)
    _save_events(work, events)
    specs = _specs()
    ids = customers.get_column("customer_id")
    features = purchase_features(state, ids, specs)
    for st in events.values():
        features = features.join(event_features(st, ids, specs, categories), on="customer_id", how="left")
    features.select("customer_id", *sorted({s.column for s in specs})).write_parquet(work / "incremental.parquet")
    day_files = [p for p in (work / "store").rglob(f"{day}.*") if p.is_file()]
    day_files += [p for p in (work / "state").glob(f"{day}.*")]
    return {
        "checks_entered": int(results["checks"].counts["rows_stored"]),
        "stored_for_day_mb": round(sum(p.stat().st_size for p in day_files) / 2**20, 2),
    }


STEPS = {"full": _full, "first_run": _first_run, "incremental": _incremental}


def _child(step: str, data: Path, work: Path, day: date) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "loyalty_assets.bench_incremental", "--child", step]
    cmd += ["--data", str(data), "--work", str(work), "--day", day.isoformat()]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def compare(work: Path) -> None:
    """Fail unless the incremental features equal the full ones, column by column."""
    import polars as pl

    full = pl.read_parquet(work / "full.parquet")
    inc = pl.read_parquet(work / "incremental.parquet")
    if full.columns != inc.columns or full.height != inc.height:
        raise SystemExit(f"features differ in shape: {full.shape} vs {inc.shape}")
    for column in full.columns:
        if not full.get_column(column).equals(inc.get_column(column)):
            raise SystemExit(f"features differ in column {column}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loyalty_assets.bench_incremental", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--days", default="100,800", help="history lengths, comma-separated")
    parser.add_argument("--work", default="/tmp/bench_incremental")
    parser.add_argument("--child", choices=sorted(STEPS))
    parser.add_argument("--data")
    parser.add_argument("--day", default=RUN_DATE.isoformat())
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_measure(args.child, args)))
        return 0
    from loyalty_assets.sample_data import generate

    rows = []
    for days in (int(d) for d in args.days.split(",")):
        work = Path(args.work) / f"{args.customers}x{days}"
        data = work / "data"
        if not (data / "customers.parquet").is_file():
            generate(data, customers=args.customers, days=days, end_date=RUN_DATE, progress=False)
        for step in ("first_run", "incremental", "full"):
            result = _child(step, data, work, RUN_DATE)
            rows.append({"customers": args.customers, "days": days, **result})
            print(json.dumps(rows[-1]), file=sys.stderr)
        compare(work)
    print("| customers | days | step | CPU s | wall s | peak RSS MB | notes |")
    print("|---:|---:|---|---:|---:|---:|---|")
    shown = {"customers", "days", "step", "cpu_s", "wall_s", "peak_rss_mb"}
    for r in rows:
        notes = ", ".join(f"{k}={v}" for k, v in r.items() if k not in shown)
        cells = [f"{r['customers']:,}", r["days"], r["step"], r["cpu_s"], r["wall_s"], r["peak_rss_mb"], notes]
        print("| " + " | ".join(str(c) for c in cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
