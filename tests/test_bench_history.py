"""The history benchmark's arithmetic on hand-made runs (never timings: those are the README's)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loyalty_assets.bench_history import main, ratios, render_markdown, step_figures


def run(day: str, cpu: float, peak: float, exit_code: int = 0) -> dict[str, Any]:
    return {"date": day, "exit": exit_code, "cpu_s": cpu, "wall_s": cpu / 2, "peak_rss_mb": peak, "steps": []}


def test_ratios_compare_the_longest_history_with_the_shortest_after_the_first_date() -> None:
    results = {
        800: [run("2025-06-25", 400.0, 9000.0), run("2025-06-26", 120.0, 3000.0), run("2025-06-27", 90.0, 2000.0)],
        100: [run("2025-06-25", 60.0, 2500.0), run("2025-06-26", 100.0, 2000.0), run("2025-06-27", 60.0, 2000.0)],
    }
    found = ratios(results)
    assert [(r["date"], round(r["cpu"], 2), round(r["peak"], 2)) for r in found] == [
        ("2025-06-26", 1.2, 1.5),
        ("2025-06-27", 1.5, 1.0),
    ]
    results[800][2]["exit"] = 1  # a failed run has no ratio
    assert [r["date"] for r in ratios(results)] == ["2025-06-26"]
    text = render_markdown(1000, results)
    assert "| 800 | 2025-06-26 | 0 | 120.0 | 60.0 | 3,000 |" in text
    assert "- 2025-06-26: CPU 1.20×, peak RSS 1.50×" in text


def test_a_step_peak_is_the_largest_sample_inside_it() -> None:
    samples = [(10.0, 100 * 2**20), (11.0, 300 * 2**20), (12.5, 200 * 2**20), (14.0, 900 * 2**20)]
    steps = step_figures([("sources", 10.0, 11.5), ("loyalty_day", 11.5, 13.0), ("empty", 13.1, 13.2)], samples)
    assert [(s["step"], round(s["wall_s"], 2), s["peak_mb"]) for s in steps] == [
        ("sources", 1.5, 300.0),
        ("loyalty_day", 1.5, 200.0),
        ("empty", 0.1, 0.0),  # no sample inside it
    ]


def test_main_writes_the_table_and_fails_when_a_run_failed(tmp_path: Path) -> None:
    calls: list[tuple[Any, ...]] = []

    def runner(*args: Any) -> dict[int, list[dict[str, Any]]]:
        calls.append(args)
        return {100: [run("2025-06-25", 1.0, 10.0)], 400: [run("2025-06-25", 2.0, 20.0, exit_code=1)]}

    out = tmp_path / "history.md"
    code = main(["--customers", "500", "--days", "100,400", "--dates", "2025-06-25", "--out", str(out)], runner=runner)
    assert code == 1 and calls[0][:2] == (500, [100, 400])
    assert "| 400 | 2025-06-25 | 1 |" in out.read_text() and out.with_suffix(".json").exists()
