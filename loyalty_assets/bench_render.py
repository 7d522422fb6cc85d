"""Benchmark: message rendering, compiled Polars expressions against Jinja2's sandbox (the peer).

Why it exists: rendering was the slowest step of a heavy day (703k messages at 1M customers, one
at a time through Jinja2: ~14k messages/s per core). The compiled renderer must reach ≥ 500k
messages/s per core and give the same bytes; this script measures both claims in one run.

    python -m loyalty_assets.bench_render [--scales 100000,1000000] [--sandbox-max N]

The messages are those of the shipped catalog: every message step of every campaign (body plus
subject for emails, the text for SMS), the rows spread round-robin over the steps, so a scale of N
is N messages. The variables are generated (seeded): names from a pool with markup, quotes,
`{{ }}`, empty and missing values and Cyrillic; 95 % of occasions with an accrual (the others make
`bonus.amount` templates fail for that row, as at run time); 0–3 favourite categories.

Each engine runs in its own subprocess, so its CPU seconds and peak RSS are its own; the parent
samples the RSS of the child's whole process tree with psutil every 50 ms, and takes the child's own
high-water mark (`VmHWM`) when that is higher (a peak between two samples). CPU seconds count the
rendering only (user + system of the child, Polars' threads included), so "messages/s per core" is
messages / CPU s. `compiled` renders through `CompiledTemplate.render` (what `build_messages`
calls); `sandbox` builds each row's dicts and calls `Template.render`, as the pipeline did before.
Both hash every rendered text and error in order; the run fails if the hashes differ. The sandbox
is slow, so above `--sandbox-max` messages it renders the first `--sandbox-max` rows of the same
data and the compiled run is hashed on the same prefix as well.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import psutil

SEED = 20250626


@dataclass(frozen=True)
class Run:
    engine: str
    messages: int
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    digest: str
    digest_rows: int
    errors: int


def message_steps() -> list[tuple[str, str, Any, Any]]:
    """(campaign id, campaign name, body, subject or None) per message step of the shipped catalog."""
    from loyalty_assets.config.campaigns import NotifyStaff, SendEmail, SendText
    from loyalty_assets.config.catalog import DEFAULT_CATALOG, load_catalog

    catalog = load_catalog(DEFAULT_CATALOG)
    renderer = catalog.renderer()
    steps: list[tuple[str, str, Any, Any]] = []
    for campaign in catalog.campaigns.values():
        for step in campaign.message_steps():
            if isinstance(step, SendEmail):
                body, subject = renderer.compiled_file(step.template), renderer.compiled_text(step.subject)
            elif isinstance(step, SendText):
                body = (
                    renderer.compiled_file(step.template) if step.template else renderer.compiled_text(step.text or "")
                )
                subject = None
            elif isinstance(step, NotifyStaff):
                body, subject = renderer.compiled_text(step.text), renderer.compiled_text(step.subject)
            else:
                continue
            steps.append((campaign.id, campaign.name, body, subject))
    return steps


def variables(n: int, seed: int = SEED) -> Any:
    """`n` rows of template variables (the frame `build_messages` renders from), generated."""
    import numpy as np
    import polars as pl

    from loyalty_assets.transforms.template_compiler import VARIABLE_DTYPES

    rng = np.random.default_rng(seed)
    names = ["Анна", "Иван", "<b>Ann</b>", 'O\'Neil & "Co"', "{{ customer.email }}", "", "Мария-Луиза", "Пётр"]
    categories = ["Молочные продукты", "Аквариумные рыбы", "Корма <премиум>", "Fish & Chips", "Сыры"]
    name_ix = rng.integers(0, len(names) + 1, n)  # the last index = no name
    has_bonus = rng.random(n) < 0.95
    cents = rng.integers(0, 10_000_000, n)
    expiry_days = rng.integers(0, 400, n)
    fav_len = rng.integers(0, 4, n)
    fav_ix = rng.integers(0, len(categories), (n, 3))
    base = np.datetime64("2025-06-26")
    frame = pl.DataFrame(
        {
            "customer.customer_id": np.arange(1, n + 1, dtype=np.int64),
            "__name": name_ix,
            "bonus": has_bonus,
            "__cents": cents,
            "bonus.expires_on": base + expiry_days.astype("timedelta64[D]"),
            "__fav": fav_ix.tolist(),
            "__fav_len": fav_len,
        }
    )
    name = pl.col("__name").replace_strict(dict(enumerate(names)), default=None, return_dtype=pl.String())
    amount = (pl.col("__cents").cast(pl.Decimal(38, 0)) / 100).cast(pl.Decimal(38, 2))
    return frame.select(
        pl.lit(True).alias("customer"),
        "customer.customer_id",
        name.alias("customer.first_name"),
        pl.format("c{}@example.com", "customer.customer_id").alias("customer.email"),
        pl.lit("+79990000000").alias("customer.phone"),
        pl.lit("Москва").alias("customer.city"),
        pl.lit("F").alias("customer.gender"),
        pl.lit(None, dtype=pl.Date()).alias("customer.birth_date"),
        "bonus",
        pl.when("bonus").then(amount).alias("bonus.amount"),
        pl.when("bonus").then(pl.col("bonus.expires_on").cast(pl.Datetime("us", "UTC"))).alias("bonus.expires_at"),
        pl.when("bonus").then(pl.col("bonus.expires_on")).alias("bonus.expires_on"),
        pl.when("bonus").then(pl.lit("X")).alias("bonus.legal_entity"),
        pl.lit(True).alias("check"),
        pl.format("C{}", "customer.customer_id").alias("check.check_id"),
        amount.alias("check.total"),
        pl.lit(True).alias("event"),
        amount.alias("event.amount"),
        pl.col("bonus.expires_on").alias("event.date"),
        pl.col("__fav")
        .list.head(pl.col("__fav_len"))
        .list.eval(pl.element().replace_strict(dict(enumerate(categories)), return_dtype=pl.String()))
        .alias("favourite_categories"),
        pl.lit(True).alias("campaign"),
        pl.lit("").alias("campaign.id"),
        pl.lit("").alias("campaign.name"),
        pl.lit(None, dtype=pl.String()).alias("variant"),
        pl.format("purchase:C{}", "customer.customer_id").alias("occasion"),
        pl.lit(base).cast(pl.Date()).alias("event_date"),
        pl.lit(base).cast(pl.Date()).alias("send_date"),
    ).cast(VARIABLE_DTYPES)  # type: ignore[arg-type]


def worker(engine: str, n: int, rows: int) -> dict[str, Any]:
    """Render `rows` of `n` generated messages with `engine`; CPU and wall of the rendering only."""
    import polars as pl

    from loyalty_assets.transforms.template_compiler import variables_to_dicts

    steps = message_steps()
    frame = variables(n).head(rows)
    index = pl.int_range(pl.len()) % len(steps)
    parts = frame.with_columns(index.alias("__step")).partition_by("__step", as_dict=True, include_key=False)
    slices = []
    for (k,), part in sorted(parts.items()):
        cid, cname, body, subject = steps[int(k)]
        slices.append(
            (part.with_columns(pl.lit(cid).alias("campaign.id"), pl.lit(cname).alias("campaign.name")), body, subject)
        )
    cpu0, wall0 = _cpu(), time.perf_counter()
    outputs: list[tuple[Any, Any]] = []
    for part, body, subject in slices:
        templates = [body] if subject is None else [body, subject]
        for template in templates:
            if engine == "compiled":
                out = template.render(part)  # Series stay in Polars, as `build_messages` keeps them
                outputs.append((out.get_column("text"), out.get_column("error")))
            else:
                texts: list[str | None] = []
                errors: list[str | None] = []
                for context in variables_to_dicts(part):
                    try:
                        texts.append(template.sandbox.render(**context))
                        errors.append(None)
                    except Exception as exc:
                        texts.append(None)
                        errors.append(f"{type(exc).__name__}: {exc}")
                outputs.append((texts, errors))
    wall, cpu = time.perf_counter() - wall0, _cpu() - cpu0
    digest = hashlib.sha256()
    errors_count = 0
    for texts, errors in outputs:
        texts_, errors_ = (
            (texts.to_list(), errors.to_list()) if isinstance(texts, pl.Series) else (texts, errors)
        )  # hashed after the clock stops: converting to Python strings is not rendering
        for t, e in zip(texts_, errors_, strict=True):
            digest.update(repr((t, e)).encode())
            errors_count += e is not None
    return {
        "messages": frame.height,
        "wall_s": wall,
        "cpu_s": cpu,
        "digest": digest.hexdigest(),
        "errors": errors_count,
    }


def _cpu() -> float:
    t = psutil.Process().cpu_times()
    return float(t.user + t.system)


def run_child(engine: str, n: int, rows: int) -> Run:
    """One engine in its own process; peak RSS of its whole process tree (sampled, or its own VmHWM)."""
    command = [sys.executable, "-m", "loyalty_assets.bench_render", "--worker", engine, str(n), str(rows)]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        root = psutil.Process(child.pid)
        while not done.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree))
            except psutil.Error:
                pass
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, _ = child.communicate()
    done.set()
    sampler.join()
    if child.returncode != 0:
        raise SystemExit(f"bench_render: the {engine} worker failed (exit {child.returncode})")
    result = json.loads(stdout.strip().splitlines()[-1])
    peak = max(peak, int(result.get("hwm_bytes", 0)))
    return Run(
        engine,
        result["messages"],
        result["wall_s"],
        result["cpu_s"],
        peak / 2**20,
        result["digest"],
        rows,
        result["errors"],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scales", default="100000,1000000", help="messages per scale, comma-separated")
    parser.add_argument("--sandbox-max", type=int, default=1_000_000, help="cap of messages the sandbox renders")
    parser.add_argument("--worker", nargs=3, metavar=("ENGINE", "N", "ROWS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        engine, n, rows = args.worker
        print(json.dumps(worker(engine, int(n), int(rows))))
        return 0
    print(
        f"python {platform.python_version()}, polars {version('polars')}, jinja2 {version('jinja2')}, "
        f"{os.cpu_count()} cores"
    )
    header = (
        "| messages | engine | rendered | CPU s | wall s | messages/s per core | peak RSS (MB) "
        "| render errors | same bytes |"
    )
    lines = [header, "|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    print(header)
    print(lines[1])
    for n in (int(s) for s in args.scales.split(",")):
        rows = min(n, args.sandbox_max)
        runs = [run_child("compiled", n, n), run_child("sandbox", n, rows)]
        if rows < n:
            runs.append(run_child("compiled", n, rows))  # the hash on the sandbox's prefix
        peer = runs[1]
        same = all(r.digest == peer.digest for r in runs if r.digest_rows == peer.digest_rows)
        if not same:
            raise SystemExit(f"bench_render: compiled and sandbox output differ at {n} messages")
        for r in runs[:2]:
            rendered = r.digest_rows
            line = (
                f"| {n:,} | {r.engine} | {rendered:,} | {r.cpu_s:.2f} | {r.wall_s:.2f} | "
                f"{rendered / r.cpu_s:,.0f} | {r.peak_rss_mb:,.0f} | {r.errors:,} | {'yes' if same else 'NO'} |"
            )
            lines.append(line)
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
