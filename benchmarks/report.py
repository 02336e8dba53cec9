"""The run as a table on the terminal, and as JSON, Markdown and (with matplotlib) a chart."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.results import (
    COPY,
    NAIVE,
    OPENPYXL,
    SERVICE_PATHS,
    OpenpyxlResult,
    RunResult,
    Sample,
    SizeResult,
    Summary,
)

if TYPE_CHECKING:
    # matplotlib is the `bench` extra's: imported where a chart is drawn, not with this module.
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

RESULTS_DIR = Path(__file__).with_name("results")
PATH_ORDER = (COPY, *SERVICE_PATHS, NAIVE)
PACKAGES = (
    "asyncpg",
    "orjson",
    "fastapi",
    "starlette",
    "uvicorn",
    "uvloop",
    "httptools",
    "httpx",
    "openpyxl",
    "lxml",
    "pyarrow",
)
HEADERS = (
    "rows",
    "path",
    "seconds",
    "rows/s",
    "MB/s",
    "TTFB ms",
    "cold TTFB ms",
    "peak RSS MB",
    "vs COPY",
    "runs",
    "CPU s/M",
    "CPU vs COPY",
    "machine CPU s/M",
    "machine vs COPY",
)
# Runs written before CPU was metered have the first ten columns only.
BASE_COLUMNS = 10
SCHEMA_TITLES = {
    "sample": "Sample schema",
    "heavy": "Heavy schema (benchmarks/schemas/heavy.sql, against COPY of its reference query)",
    "hostile": "Hostile dataset (notes of 10,000 quotes, a 5 MB note, 1 MB cells)",
}


# --- machine --------------------------------------------------------------------------------


def _proc_field(path: str, key: str) -> str | None:
    try:
        for line in Path(path).read_text().splitlines():
            name, _, value = line.partition(":")
            if name.strip() == key:
                return value.strip()
    except OSError:
        pass
    return None


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=Path(__file__).resolve().parent.parent,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def code_fingerprint() -> str:
    """A hash of the service's code and SQL as they are on disk (committed or not)."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    code = root / "learner_export"
    for path in sorted([*code.glob("**/*.py"), *code.glob("**/*.sql")]):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def load_average() -> str | None:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return None


def machine_info(postgres_version: str, database: str) -> dict[str, Any]:
    memory = _proc_field("/proc/meminfo", "MemTotal")
    packages: dict[str, str] = {}
    for name in PACKAGES:
        try:
            packages[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    status = _git("status", "--porcelain")
    return {
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "memory_mb": int(memory.split()[0]) // 1024 if memory else None,
        "cpu_model": _proc_field("/proc/cpuinfo", "model name"),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "postgres": postgres_version,
        "database": database,
        "packages": packages,
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
        "code_fingerprint": code_fingerprint(),
        "load_average_at_start": load_average(),
    }


# --- formatting -----------------------------------------------------------------------------


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _summary_row(rows: int, s: Summary) -> list[str]:
    runs = f"{s.runs}" if not s.errors else f"{s.runs} ({s.errors} failed)"
    return [
        f"{rows:,}",
        s.path,
        _num(s.seconds, 3),
        _num(s.rows_per_s, 0),
        _num(s.mb_per_s),
        _num(s.ttfb_ms),
        _num(s.cold_ttfb_ms),
        _num(s.peak_rss_mb),
        _num(s.vs_copy, 2),
        runs,
        _num(s.cpu_per_m, 2),
        _num(s.cpu_vs_copy, 2),
        _num(s.machine_cpu_per_m, 2),
        _num(s.machine_cpu_vs_copy, 2),
    ]


def table_rows(run: RunResult, schema: str = "sample") -> list[list[str]]:
    out: list[list[str]] = []
    for size in run.of_schema(schema):
        for path in PATH_ORDER:
            if path in size.summaries:
                out.append(_summary_row(size.rows, size.summaries[path]))
        o = size.openpyxl
        if o is not None:
            out.append(
                [
                    f"{size.rows:,}",
                    OPENPYXL + " (write only)",
                    _num(o.seconds, 3),
                    _num(o.rows_per_s, 0),
                    _num(o.bytes / 1e6 / o.seconds),
                    "-",
                    "-",
                    "-",
                    "-",
                    "1",
                    "-",
                    "-",
                    "-",
                    "-",
                ]
            )
    return out


def schemas_of(run: RunResult) -> list[str]:
    return list(dict.fromkeys(s.schema for s in run.sizes))


def _step_lines(run: RunResult) -> list[str]:
    total = sum(seconds for _, seconds in run.steps)
    return [f"{name}: {seconds:,.1f} s" for name, seconds in run.steps] + (
        [f"all steps: {total:,.1f} s ({total / 60:.1f} min)"] if run.steps else []
    )


def _text_table(headers: tuple[str, ...] | list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [list(headers), *rows]) for i in range(len(headers))]

    def line(cells: list[str] | tuple[str, ...]) -> str:
        return "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def _md_table(headers: tuple[str, ...] | list[str], rows: list[list[str]]) -> str:
    aligns = ["---" if i < 2 else "---:" for i in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(aligns) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _keyset_lines(run: RunResult) -> list[str]:
    k = run.keyset
    if k is None:
        return []
    lines = [
        f"Keyset pages ({k.rows:,} rows, {k.page_size:,} a page, median of {k.runs}): "
        f"first {k.first_median_ms:.1f} ms, last {k.last_median_ms:.1f} ms, "
        f"last/first {k.ratio:.2f}"
    ]
    for p in k.plans:
        execution = "" if p.execution_ms is None else f", {p.execution_ms:.1f} ms"
        lines.append(
            f"  plan ({p.source}{execution}): sort on learners: "
            f"{'YES' if p.sort_on_learners else 'no'}, page sort: "
            f"{'yes' if p.page_sort else 'no'}, learners_export_keyset: "
            f"{'yes' if p.keyset_index_used else 'NO'}; " + " > ".join(p.nodes[:8])
        )
    lines += [f"  note: {n}" for n in k.notes]
    return lines


def _concurrency_rows(run: RunResult) -> list[list[str]]:
    c = run.concurrency
    if c is None:
        return []
    return [
        [
            b.mode,
            f"{c.downloads}",
            _num(b.wall_seconds, 2),
            _num(b.rows_per_s, 0),
            _num(b.ttfb_p50_ms),
            _num(b.ttfb_p99_ms),
            _num(b.peak_rss_mb),
            f"{b.errors}",
        ]
        for b in (c.parallel, c.sequential)
    ]


CONCURRENCY_HEADERS = (
    "mode",
    "downloads",
    "wall s",
    "rows/s",
    "TTFB p50 ms",
    "TTFB p99 ms",
    "peak RSS MB",
    "errors",
)
TARGET_HEADERS = ("target", "bound", "measured", "status", "where")


def _target_rows(run: RunResult) -> list[list[str]]:
    return [
        [
            t.name,
            f"{'>=' if t.bound == 'min' else '<='} {t.limit:g}",
            _num(t.measured, 2),
            t.status,
            t.note,
        ]
        for t in run.targets
    ]


def _concurrency_title(run: RunResult) -> str:
    c = run.concurrency
    assert c is not None
    ratio = "-" if c.ratio is None else f"{c.ratio:.2f}"
    source = "" if c.source_rows is None else f" (limit=, from the {c.source_rows:,}-row dataset)"
    return (
        f"Concurrency: {c.downloads} downloads of {c.dataset_rows:,} rows{source} "
        f"({', '.join(c.formats)} in turn), parallel ÷ sequential rows/s = {ratio}"
    )


CPU_NOTE = (
    "CPU s/M: core-seconds per million rows of the service's process and the PostgreSQL "
    "processes serving the dataset's database (backends and their parallel workers); machine "
    "CPU s/M: every core's busy time during the transfer, whoever used it. COPY's client is not "
    "counted, nor the HTTP client."
)


def _cpu_notes(run: RunResult) -> list[str]:
    notes = []
    for size in run.sizes:
        health = [
            f"{p} {s.health_max_ms:,.0f} ms"
            for p, s in size.summaries.items()
            if s.health_max_ms is not None
        ]
        if health:
            notes.append(
                f"slowest /healthz answer during the {size.schema} exports (median of runs): "
                + ", ".join(health)
            )
    unresolved = sum(x.cpu_unresolved_exits for s in run.sizes for x in s.samples)
    if unresolved:
        notes.append(
            f"{unresolved} PostgreSQL process exits during measured transfers were reaped "
            "together with another database's: their last moments (at most 20 ms each) are not "
            "counted"
        )
    return notes


def text_report(run: RunResult) -> str:
    parts: list[str] = []
    for schema in schemas_of(run) or ["sample"]:
        if parts:
            parts.append("")
        parts += [
            f"{SCHEMA_TITLES.get(schema, schema)}:",
            _text_table(HEADERS, table_rows(run, schema)),
        ]
    parts.append(CPU_NOTE)
    notes = [n for s in run.sizes for n in s.notes] + run.notes + _cpu_notes(run)
    parts += [f"note: {n}" for n in notes]
    parts += _keyset_lines(run)
    if run.concurrency is not None:
        parts += [
            "",
            _concurrency_title(run),
            _text_table(CONCURRENCY_HEADERS, _concurrency_rows(run)),
        ]
    if run.steps:
        parts += ["", "Wall time of each step:", *[f"  {line}" for line in _step_lines(run)]]
    if run.targets:
        parts += [
            "",
            "Targets (benchmarks/targets.toml):",
            _text_table(TARGET_HEADERS, _target_rows(run)),
        ]
    return "\n".join(parts)


def markdown_report(run: RunResult) -> str:
    m = run.machine
    parts = [
        f"# learner-export benchmark, {run.started_at}",
        "",
        f"{m.get('cpu_model')}, {m.get('nproc')} CPUs, {m.get('memory_mb')} MB; "
        f"Python {m.get('python')}; {m.get('postgres')} ({m.get('database')}); "
        f"commit {str(m.get('git_commit'))[:12]}{' (dirty)' if m.get('git_dirty') else ''}.",
        f"Options: {json.dumps(run.options)}.",
        f"Load average at the start: {m.get('load_average_at_start')}; at the end: "
        f"{m.get('load_average_at_end')} (other work on the machine slows every path; the "
        "attributed CPU leaves it out, the machine-wide CPU does not).",
        "",
        "Medians over the runs. rows/s and MB/s (10^6 bytes) are seen by the client, transfer "
        "included; TTFB runs from sending the request to the first body chunk. Each service "
        "export runs on a fresh server that first serves one 1-row export of the same format "
        "(its TTFB is 'cold TTFB': the process's first request); peak RSS is that server's "
        "VmHWM (MiB) after the export. The naive endpoint gets no warm-up. "
        "vs COPY = rows/s ÷ COPY's rows/s. openpyxl: one run, rows already in memory, writing "
        "only. " + CPU_NOTE,
        "",
        _md_table(HEADERS, table_rows(run)),
    ]
    notes = [n for s in run.sizes for n in s.notes] + run.notes + _cpu_notes(run)
    if notes:
        parts += [""] + [f"- {n}" for n in notes]
    keyset = _keyset_lines(run)
    if keyset:
        parts += ["", "## Keyset pages", "", keyset[0] + ".", ""]
        parts += [f"- {line.strip()}" for line in keyset[1:]]
    for schema in schemas_of(run):
        if schema != "sample":
            parts += [
                "",
                f"## {SCHEMA_TITLES.get(schema, schema)}",
                "",
                _md_table(HEADERS, table_rows(run, schema)),
            ]
    if run.concurrency is not None:
        parts += [
            "",
            "## Concurrency",
            "",
            _concurrency_title(run) + ".",
            "",
            _md_table(CONCURRENCY_HEADERS, _concurrency_rows(run)),
        ]
    if run.steps:
        parts += ["", "## Wall time of each step", ""] + [f"- {line}" for line in _step_lines(run)]
    if run.targets:
        parts += ["", "## Targets", "", _md_table(TARGET_HEADERS, _target_rows(run))]
    return "\n".join(parts) + "\n"


# --- chart ----------------------------------------------------------------------------------

# Names as a reader knows them; a line break keeps bar labels narrow, legends join the lines.
LABELS = {
    COPY: "COPY\n(the limit)",
    "csv": "CSV",
    "jsonl": "JSON Lines",
    "xlsx": "XLSX",
    "parquet": "Parquet",
    NAIVE: "naive\n(in memory)",
    OPENPYXL: "openpyxl\nwrite-only",
}
CHART_PATHS = (*PATH_ORDER, OPENPYXL)
# What the service is measured against: dashed lines and hatched bars, the service's own solid.
REFERENCES = (COPY, NAIVE, OPENPYXL)
# Values spanning more than this factor go on a log scale; below it a linear one from 0 reads
# better (and a log axis spanning less than a decade may show no labelled tick at all).
LOG_SPAN = 20.0
# Line ends closer than this (a fraction of the axes' height) share one label.
LABEL_GAP = 0.06
TIMES, EN_DASH = "\u00d7", "\u2013"


@dataclasses.dataclass(frozen=True, slots=True)
class Panel:
    """One quantity of the chart: which Summary field, and how its axis reads."""

    title: str
    ylabel: str
    attr: str
    # Throughput stays linear from 0 so that ratios to COPY read as heights.
    log_ok: bool = True


PANELS = (
    Panel(
        f"Throughput ({TIMES} = share of COPY's)",
        "rows per second, seen by the client",
        "rows_per_s",
        log_ok=False,
    ),
    Panel("First byte (TTFB)", "time to first byte (ms)", "ttfb_ms"),
    Panel("Server peak RSS (none for COPY)", "peak RSS of the export server (MiB)", "peak_rss_mb"),
)


def _short(value: float) -> str:
    """1,000,000 as 1M, 50,000 as 50K: axis and bar labels that fit."""
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.3g}"


def _value_text(attr: str, value: float) -> str:
    if attr == "rows_per_s":
        return _short(value)
    if attr == "ttfb_ms":
        return f"{value:.0f} ms" if value < 1000 else f"{value / 1000:.3g} s"
    return f"{value:.0f} MiB" if value < 1024 else f"{value / 1024:.2g} GiB"


def _point_text(size: SizeResult, path: str, attr: str, sep: str = " ") -> str:
    """A value as it is labelled on the chart; a throughput with its ratio to COPY's."""
    value = _value(size, path, attr)
    assert value is not None
    copy = _value(size, COPY, attr)
    if attr != "rows_per_s" or path == COPY or not copy:
        return _value_text(attr, value)
    return f"{_short(value)}{sep}({value / copy:.2f}{TIMES})"


def _value(size: SizeResult, path: str, attr: str) -> float | None:
    if path == OPENPYXL:
        # openpyxl only writes a file from rows in memory: a throughput, nothing else.
        o = size.openpyxl
        return o.rows_per_s if o is not None and attr == "rows_per_s" else None
    summary = size.summaries.get(path)
    value = None if summary is None else getattr(summary, attr)
    return None if value is None else float(value)


def _series(run: RunResult, path: str, attr: str) -> tuple[list[int], list[float]]:
    """(rows, median) of one path across the sizes, where measured."""
    points = [(s.rows, v) for s in run.sizes if (v := _value(s, path, attr)) is not None]
    return [r for r, _ in points], [v for _, v in points]


def _tick_text(attr: str, value: float) -> str:
    if attr == "rows_per_s":
        return _short(value)
    return f"{value:,.0f}" if value >= 1 else f"{value:g}"


def _scale_y(ax: Axes, panel: Panel, values: list[float], bars: bool) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    low, high = min(values, default=0.0), max(values, default=1.0)
    # Bars stay linear: on a log axis their heights would not compare.
    if not bars and panel.log_ok and low > 0 and high / low > LOG_SPAN:
        ax.set_yscale("log")
        # Labelled ticks at 1-2-5 while the span is short, at each decade once it is long.
        subs = (1.0,) if high / low >= 1000 else (1.0, 2.0, 5.0)
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=subs))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_ylim(low / 1.6, high * 2.2)
    else:
        ax.set_ylim(0, high * 1.2 if high > 0 else 1)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _tick_text(panel.attr, v)))


def _style(path: str) -> dict[str, Any]:
    return {"color": f"C{CHART_PATHS.index(path)}", "label": LABELS[path].replace("\n", " ")}


def _draw_lines(run: RunResult, ax: Axes, panel: Panel) -> list[float]:
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    values: list[float] = []
    for path in CHART_PATHS:
        xs, ys = _series(run, path, panel.attr)
        if xs:
            ax.plot(
                xs,
                ys,
                marker="x" if path == OPENPYXL else "o",
                linestyle="--" if path in REFERENCES else "-",
                **_style(path),
            )
            values += ys
    sizes = [s.rows for s in run.sizes]
    ax.set_xscale("log")
    # Ticks where the sizes were measured, each labelled, and nothing between them.
    ax.xaxis.set_major_locator(FixedLocator(sizes))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _short(v)))
    ax.xaxis.set_minor_locator(NullLocator())
    # Room on the right for the labels at the lines' ends.
    ax.set_xlim(min(sizes) / 1.4, max(sizes) * 4)
    ax.set_xlabel("learners exported (rows, log scale)")
    return values


def _bar_points(size: SizeResult, panel: Panel) -> list[tuple[str, float]]:
    return [(p, v) for p in CHART_PATHS if (v := _value(size, p, panel.attr)) is not None]


def _draw_bars(size: SizeResult, ax: Axes, panel: Panel) -> list[float]:
    points = _bar_points(size, panel)
    for n, (path, value) in enumerate(points):
        bars = ax.bar(
            n,
            value,
            width=0.7,
            hatch="//" if path in REFERENCES else None,
            edgecolor="white",
            **_style(path),
        )
        ax.bar_label(
            bars, [_point_text(size, path, panel.attr, sep="\n")], padding=2, fontsize="small"
        )
    ax.set_xticks(range(len(points)), [LABELS[p] for p, _ in points], fontsize="small")
    # A panel of one or two bars keeps bars as narrow as the others', centred.
    spare = (max(len(points), 3) - len(points)) / 2
    ax.set_xlim(-0.6 - spare, len(points) - 0.4 + spare)
    return [v for _, v in points]


def _end_labels(run: RunResult, ax: Axes, panel: Panel) -> None:
    """Each line's last value at its end; lines ending close together share one label."""
    to_axes = ax.transData + ax.transAxes.inverted()
    ends: dict[int, list[tuple[float, str, str]]] = {}
    for path in CHART_PATHS:
        xs, ys = _series(run, path, panel.attr)
        if xs:
            size = run.size(xs[-1])
            assert size is not None
            height = float(to_axes.transform((xs[-1], ys[-1]))[1])
            ends.setdefault(xs[-1], []).append(
                (height, _point_text(size, path, panel.attr), _style(path)["color"])
            )
    for x, points in ends.items():
        groups: list[list[tuple[float, str, str]]] = []
        for point in sorted(points):
            if groups and point[0] - groups[-1][-1][0] < LABEL_GAP:
                groups[-1].append(point)
            else:
                groups.append([point])
        for group in groups:
            texts = list(dict.fromkeys(t for _, t, _ in group))
            units = {t.rpartition(" ")[2] for t in texts}
            if len(texts) > 1 and len(units) == 1 and " " in texts[0]:
                text = f"{texts[0].rpartition(' ')[0]}{EN_DASH}{texts[-1]}"
            else:
                text = " / ".join(texts)
            height = sum(h for h, _, _ in group) / len(group)
            color = group[0][2] if len(group) == 1 else "black"
            ax.annotate(
                text,
                (x, height),
                xycoords=("data", "axes fraction"),
                xytext=(7, 0),
                textcoords="offset points",
                va="center",
                fontsize="small",
                color=color,
            )


def figure(run: RunResult) -> Figure:
    """Throughput, first byte and peak RSS of every path: lines over the sizes, or bars for one."""
    from matplotlib import rc_context

    if not run.sizes:
        raise ValueError("nothing was measured")
    # Larger than matplotlib's 10 points: the README shows the chart at about half its width.
    with rc_context({"font.size": 12}):
        return _figure(run)


def _figure(run: RunResult) -> Figure:
    from matplotlib.figure import Figure

    one_size = len(run.sizes) == 1
    fig = Figure(figsize=(15, 5.4), layout="constrained")
    # Bars as wide in every panel (each panel as wide as its number of bars), but no panel too
    # narrow for its title.
    widths = [max(len(_bar_points(run.sizes[0], p)), 3) + 1 if one_size else 1 for p in PANELS]
    axes = fig.subplots(1, len(PANELS), width_ratios=widths)
    for ax, panel in zip(axes, PANELS, strict=True):
        values = _draw_bars(run.sizes[0], ax, panel) if one_size else _draw_lines(run, ax, panel)
        if not values:
            ax.text(0.5, 0.5, "not measured", transform=ax.transAxes, ha="center", color="grey")
        _scale_y(ax, panel, values, bars=one_size)
        if not one_size:
            _end_labels(run, ax, panel)
        ax.set(title=panel.title, ylabel=panel.ylabel)
        ax.grid(True, axis="y" if one_size else "both", alpha=0.3)
        ax.set_axisbelow(True)
    if not one_size:
        # One legend for the three panels, below them: a legend inside an axes hides lines.
        handles: dict[str, Any] = {}
        for ax in axes:
            for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
                handles.setdefault(label, handle)
        fig.legend(
            handles.values(),
            handles.keys(),
            loc="outside lower center",
            ncols=len(handles),
            frameon=False,
        )
    m, repeat = run.machine, run.options.get("repeat")
    details = [str(m["cpu_model"])] if m.get("cpu_model") else []
    details += [f"{m['nproc']} CPUs"] if m.get("nproc") else []
    details += [f"medians of {repeat} runs"] if repeat else []
    what = f"{run.sizes[0].rows:,} learners" if one_size else "by learners exported"
    fig.suptitle(
        "\n".join(
            [
                f"learner-export benchmark {run.started_at}, {what}",
                *([", ".join(details)] if details else []),
            ]
        ),
        fontsize="large",
    )
    return fig


def _chart(run: RunResult, path: Path) -> str:
    if importlib.util.find_spec("matplotlib") is None:
        return "matplotlib is not installed: no chart (pip install 'matplotlib>=3.8')"
    # The chart draws the sample schema across its sizes; other schemas are in the tables.
    sample = run.of_schema("sample")
    if not sample:
        return "no chart: it draws the sample schema, which this run did not measure"
    figure(dataclasses.replace(run, sizes=sample)).savefig(path, dpi=110)
    return f"chart: {path}"


# --- files ----------------------------------------------------------------------------------


def _sample(s: Sample) -> dict[str, Any]:
    return {**dataclasses.asdict(s), "rows_per_s": s.rows_per_s, "mb_per_s": s.mb_per_s}


def _size(s: SizeResult) -> dict[str, Any]:
    out = dataclasses.asdict(s)
    out["samples"] = [_sample(x) for x in s.samples]
    return out


def to_json(run: RunResult) -> dict[str, Any]:
    out = dataclasses.asdict(run)
    out["sizes"] = [_size(s) for s in run.sizes]
    if run.concurrency is not None:
        for mode in ("parallel", "sequential"):
            batch = getattr(run.concurrency, mode)
            out["concurrency"][mode]["samples"] = [_sample(x) for x in batch.samples]
    out["units"] = {
        "mb_per_s": "10^6 bytes/s",
        "peak_rss_mb": "MiB (VmHWM)",
        "ttfb_ms": "ms",
        "seconds": "s",
    }
    return out


def write_files(run: RunResult, directory: Path = RESULTS_DIR) -> list[str]:
    """Write <timestamp>.json, .md and .png; return what was written (and why not the chart)."""
    directory.mkdir(parents=True, exist_ok=True)
    base = directory / run.started_at
    json_path, md_path = base.with_suffix(".json"), base.with_suffix(".md")
    json_path.write_text(json.dumps(to_json(run), indent=1, default=str) + "\n")
    md_path.write_text(markdown_report(run))
    written = [f"results: {json_path}", f"summary: {md_path}"]
    try:
        written.append(_chart(run, base.with_suffix(".png")))
    except Exception as exc:  # a chart is a convenience: never lose the run for it
        written.append(f"no chart: {type(exc).__name__}: {exc}")
    print(*written, sep="\n", file=sys.stderr)
    return written


def early_stop_status(exc: BaseException) -> int:
    """The exit status of a run stopped by exc (its traceback printed when it is a failure)."""
    if isinstance(exc, Exception):
        traceback.print_exc()
    if isinstance(exc, SystemExit) and isinstance(exc.code, int):
        return exc.code
    return 130 if isinstance(exc, KeyboardInterrupt) else 2


# --- reading a run back ---------------------------------------------------------------------


def _cell(text: str) -> float | None:
    return None if text == "-" else float(text.replace(",", ""))


def run_from_markdown(text: str) -> RunResult:
    """A run's main table read back from its <timestamp>.md: the figures its chart draws."""
    lines = text.splitlines()
    started_at = lines[0].removeprefix("# learner-export benchmark, ").strip()
    options: dict[str, Any] = {}
    machine: dict[str, Any] = {}
    for line in lines:
        if line.startswith("Options: "):
            options = json.loads(line.removeprefix("Options: ").removesuffix("."))
        elif (found := re.match(r"(.*), (\d+) CPUs, (\d+) MB; ", line)) is not None:
            machine = {"cpu_model": found[1], "nproc": int(found[2]), "memory_mb": int(found[3])}
    base = _md_table(HEADERS[:BASE_COLUMNS], []).splitlines()[0].removesuffix(" |")
    header = next((line for line in lines if line.startswith(base)), None)
    if header is None:
        raise ValueError("no results table: not a learner-export benchmark summary")
    run = RunResult(started_at, options, machine)
    # The table, then its notes ("- ..."), then the next section.
    for line in lines[lines.index(header) + 2 :]:
        if line.startswith("- "):
            run.notes.append(line[2:])
        if not line.startswith("|"):
            if line.startswith("#"):
                break
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows, path = int(cells[0].replace(",", "")), cells[1]
        seconds, rows_per_s, mb_per_s, ttfb, cold, rss, vs_copy = map(_cell, cells[2:9])
        cpu_cells = [_cell(c) for c in cells[BASE_COLUMNS:]] + [None] * 4
        size = run.size(rows)
        if size is None:
            size = SizeResult(
                rows, database=str(machine.get("database", "")), reused=True, prepare_seconds=0.0
            )
            run.sizes.append(size)
        if path.startswith(OPENPYXL):
            if seconds is None or rows_per_s is None or mb_per_s is None:
                raise ValueError(f"openpyxl's row lacks a figure: {line}")
            # The table keeps MB/s, not bytes, nor whether lxml was there.
            size.openpyxl = OpenpyxlResult(
                rows, seconds, rows_per_s, round(mb_per_s * seconds * 1e6), lxml=False
            )
            continue
        runs, _, failed = cells[9].partition(" (")
        errors = int(failed.split()[0]) if failed else 0
        size.summaries[path] = Summary(
            path,
            rows,
            int(runs),
            errors,
            None,
            seconds,
            rows_per_s,
            mb_per_s,
            ttfb,
            cold,
            rss,
            vs_copy,
            cpu_per_m=cpu_cells[0],
            cpu_vs_copy=cpu_cells[1],
            machine_cpu_per_m=cpu_cells[2],
            machine_cpu_vs_copy=cpu_cells[3],
        )
    return run


def main(argv: list[str] | None = None) -> int:
    """python -m benchmarks.report RUN.md [OUT.png]: redraw a run's chart from its summary."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (1, 2):
        print("usage: python -m benchmarks.report RUN.md [OUT.png]", file=sys.stderr)
        return 2
    source = Path(args[0])
    target = Path(args[1]) if len(args) == 2 else source.with_suffix(".png")
    try:
        run = run_from_markdown(source.read_text())
    except (OSError, ValueError) as exc:
        print(f"{source}: {exc}", file=sys.stderr)
        return 2
    print(_chart(run, target), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
