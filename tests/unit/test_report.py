"""The benchmark chart, drawn from a committed run and from a one-size run; no database."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image

from benchmarks import report
from benchmarks.results import COPY, NAIVE, OpenpyxlResult, RunResult, Sample, SizeResult

COMMITTED = Path(__file__).resolve().parents[2] / "benchmarks/results/20261125T141910Z.md"
ROWS = 20_000


def committed_run() -> RunResult:
    return report.run_from_markdown(COMMITTED.read_text())


def one_size_run(paths: tuple[str, ...]) -> RunResult:
    """A --quick run as the suite builds it: samples of each path, then their medians."""
    size = SizeResult(ROWS, database="bench_20000", reused=True, prepare_seconds=1.0)
    # (seconds, TTFB ms, peak RSS MiB) of three runs per path.
    measured = {
        COPY: (0.05, 30.0, None),
        "csv": (0.07, 9.0, 73.0),
        "jsonl": (0.09, 10.0, 75.0),
        "xlsx": (0.14, 13.0, 77.0),
        NAIVE: (0.2, 180.0, 90.0),
    }
    for path in paths:
        seconds, ttfb, rss = measured[path]
        size.samples += [
            Sample(path, ROWS, ROWS * 200, seconds * k, ttfb * k, None if rss is None else rss * k)
            for k in (0.9, 1.0, 1.1)
        ]
    size.summarize()
    size.openpyxl = OpenpyxlResult(ROWS, 2.0, ROWS / 2.0, 1_000_000, lxml=True)
    return RunResult("20260101T000000Z", {"repeat": 3}, {"nproc": 2}, sizes=[size])


def panel(fig: Figure, title: str) -> Axes:
    return next(ax for ax in fig.axes if ax.get_title().startswith(title))


def tick_labels(axis: Axis) -> list[str]:
    """The major tick labels that are drawn: inside the axis's view."""
    low, high = sorted(axis.get_view_interval())
    return [t.label1.get_text() for t in axis.get_major_ticks() if low <= t.get_loc() <= high]


def assert_every_axis_labelled(fig: Figure) -> None:
    fig.draw_without_rendering()
    for ax in fig.axes:
        assert ax.get_ylabel(), ax.get_title()
        title = ax.title.get_window_extent()
        assert fig.bbox.x0 <= title.x0 and title.x1 <= fig.bbox.x1, ax.get_title()
        # A lone bar names its path with one tick; a value axis needs two to read a scale.
        for axis, least in ((ax.xaxis, 1), (ax.yaxis, 2)):
            labels = tick_labels(axis)
            assert len(labels) >= least and all(labels), (ax.get_title(), labels)


def assert_png(png: Path) -> None:
    with Image.open(png) as image:
        assert image.format == "PNG"
        assert image.width > image.height > 300


def test_committed_summary_reads_back_as_its_table() -> None:
    text = COMMITTED.read_text()
    run = committed_run()
    assert [s.rows for s in run.sizes] == [50_000, 200_000, 1_000_000]
    csv = run.sizes[2].summaries["csv"]
    assert (csv.rows_per_s, csv.ttfb_ms, csv.peak_rss_mb, csv.vs_copy) == (
        266_610,
        13.6,
        75.2,
        0.64,
    )
    assert run.sizes[2].summaries[COPY].peak_rss_mb is None
    openpyxl = run.sizes[1].openpyxl
    assert openpyxl is not None and openpyxl.rows_per_s == 9_698
    assert run.sizes[2].openpyxl is None
    # Written again, the run gives the same table as the committed file, with the CPU columns
    # (not metered then) empty.
    table = [line for line in text.splitlines() if line.startswith("| ")][:19]
    assert table[0].startswith("| rows | path |")
    again = report.markdown_report(run).splitlines()
    start = next(i for i, line in enumerate(again) if line.startswith(table[0][:-2]))
    for old, new in zip(table, again[start : start + 19], strict=True):
        cells = [c.strip() for c in new.strip().strip("|").split("|")]
        assert "| " + " | ".join(cells[: report.BASE_COLUMNS]) + " |" == old
        if not old.startswith(("| rows", "| ---")):
            assert cells[report.BASE_COLUMNS :] == ["-"] * 4


def test_three_sizes_draw_lines_with_a_first_byte_panel_and_the_legend_off_the_lines(
    tmp_path: Path,
) -> None:
    run = committed_run()
    fig = report.figure(run)
    assert [ax.get_title() for ax in fig.axes] == [p.title for p in report.PANELS]
    ttfb = panel(fig, "First byte")
    lines = {line.get_label(): np.asarray(line.get_ydata()).tolist() for line in ttfb.get_lines()}
    assert lines["CSV"] == [10.3, 11.6, 13.6]
    assert lines["naive (in memory)"] == [435.2, 2_080.7, 11_322.4]
    assert ttfb.get_yscale() == "log"
    for ax in fig.axes:
        assert ax.get_xscale() == "log"
        assert ax.get_legend() is None
    assert_every_axis_labelled(fig)
    assert tick_labels(ttfb.xaxis) == ["50K", "200K", "1M"]
    # One legend, naming every path, and outside every panel.
    [legend] = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == [
        "COPY (the limit)",
        "CSV",
        "JSON Lines",
        "XLSX",
        "naive (in memory)",
        "openpyxl write-only",
    ]
    box = legend.get_window_extent()
    assert not any(box.overlaps(ax.get_window_extent()) for ax in fig.axes)
    # The lines' last values are written at their ends; close ones share a label.
    ends = [t.get_text() for t in ttfb.texts]
    assert sorted(ends) == ["1.28 s", "11.3 s", "14\u201317 ms"]
    throughput = [t.get_text() for t in panel(fig, "Throughput").texts]
    assert "267K (0.64\u00d7)" in throughput

    # Redrawn from the summary on the command line, as docs/benchmark-1m.png is.
    target = tmp_path / "chart.png"
    assert report.main([str(COMMITTED), str(target)]) == 0
    assert_png(target)
    assert report.main([]) == 2
    assert report.main([str(Path(__file__)), str(target)]) == 2


@pytest.mark.parametrize("paths", [(COPY, "csv", "jsonl", "xlsx", NAIVE), (COPY, "csv")])
def test_one_size_draws_bars_per_path_on_linear_axes(
    tmp_path: Path, paths: tuple[str, ...]
) -> None:
    run = one_size_run(paths)
    fig = report.figure(run)
    for ax in fig.axes:
        assert (ax.get_xscale(), ax.get_yscale()) == ("linear", "linear")
        assert not ax.get_lines()
    ttfb = panel(fig, "First byte (TTFB)")
    bars = [p for p in ttfb.patches if isinstance(p, Rectangle)]
    assert [round(b.get_height(), 6) for b in bars] == [
        round(run.sizes[0].summaries[p].ttfb_ms or 0, 6) for p in paths
    ]
    assert_every_axis_labelled(fig)
    names = [label.replace("\n", " ") for label in tick_labels(ttfb.xaxis)]
    assert names == [report.LABELS[p].replace("\n", " ") for p in paths]
    # Each bar carries its value; openpyxl appears where it was measured: throughput only.
    assert "9 ms" in [t.get_text() for t in ttfb.texts]
    throughput = panel(fig, "Throughput")
    assert tick_labels(throughput.xaxis)[-1] == "openpyxl\nwrite-only"
    assert "openpyxl\nwrite-only" not in tick_labels(ttfb.xaxis)
    assert not fig.legends

    png = tmp_path / f"{run.started_at}.png"
    assert f"chart: {png}" in report.write_files(run, tmp_path)
    assert_png(png)
