"""The run as a table on the terminal, and as JSON, Markdown and (with matplotlib) a chart."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

from benchmarks.results import (
    COPY,
    NAIVE,
    OPENPYXL,
    SERVICE_PATHS,
    RunResult,
    Sample,
    SizeResult,
    Summary,
)

RESULTS_DIR = Path(__file__).with_name("results")
PATH_ORDER = (COPY, *SERVICE_PATHS, NAIVE)
PACKAGES = ("asyncpg", "orjson", "fastapi", "starlette", "uvicorn", "uvloop", "httptools",
            "httpx", "openpyxl", "lxml", "pyarrow")
HEADERS = ("rows", "path", "seconds", "rows/s", "MB/s", "TTFB ms", "cold TTFB ms", "peak RSS MB",
           "vs COPY", "runs")


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
        done = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10,
                              cwd=Path(__file__).resolve().parent.parent, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def code_fingerprint() -> str:
    """A hash of the service's code and SQL as they are on disk (committed or not)."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for path in sorted([*root.glob("service/**/*.py"), *root.glob("sql/**/*.sql")]):
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
    return [f"{rows:,}", s.path, _num(s.seconds, 3), _num(s.rows_per_s, 0), _num(s.mb_per_s),
            _num(s.ttfb_ms), _num(s.cold_ttfb_ms), _num(s.peak_rss_mb), _num(s.vs_copy, 2), runs]


def table_rows(run: RunResult) -> list[list[str]]:
    out: list[list[str]] = []
    for size in run.sizes:
        for path in PATH_ORDER:
            if path in size.summaries:
                out.append(_summary_row(size.rows, size.summaries[path]))
        o = size.openpyxl
        if o is not None:
            out.append([f"{size.rows:,}", OPENPYXL + " (write only)", _num(o.seconds, 3),
                        _num(o.rows_per_s, 0), _num(o.bytes / 1e6 / o.seconds), "-", "-", "-",
                        "-", "1"])
    return out


def _text_table(headers: tuple[str, ...] | list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [list(headers), *rows]) for i in range(len(headers))]
    def line(cells: list[str] | tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
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
    lines = [f"Keyset pages ({k.rows:,} rows, {k.page_size:,} a page, median of {k.runs}): "
             f"first {k.first_median_ms:.1f} ms, last {k.last_median_ms:.1f} ms, "
             f"last/first {k.ratio:.2f}"]
    for p in k.plans:
        execution = "" if p.execution_ms is None else f", {p.execution_ms:.1f} ms"
        lines.append(f"  plan ({p.source}{execution}): sort on learners: "
                     f"{'YES' if p.sort_on_learners else 'no'}, page sort: "
                     f"{'yes' if p.page_sort else 'no'}, learners_export_keyset: "
                     f"{'yes' if p.keyset_index_used else 'NO'}; " + " > ".join(p.nodes[:8]))
    lines += [f"  note: {n}" for n in k.notes]
    return lines


def _concurrency_rows(run: RunResult) -> list[list[str]]:
    c = run.concurrency
    if c is None:
        return []
    return [[b.mode, f"{c.downloads}", _num(b.wall_seconds, 2), _num(b.rows_per_s, 0),
             _num(b.ttfb_p50_ms), _num(b.ttfb_p99_ms), _num(b.peak_rss_mb), f"{b.errors}"]
            for b in (c.parallel, c.sequential)]


CONCURRENCY_HEADERS = ("mode", "downloads", "wall s", "rows/s", "TTFB p50 ms", "TTFB p99 ms",
                       "peak RSS MB", "errors")
TARGET_HEADERS = ("target", "bound", "measured", "status", "where")


def _target_rows(run: RunResult) -> list[list[str]]:
    return [[t.name, f"{'>=' if t.bound == 'min' else '<='} {t.limit:g}", _num(t.measured, 2),
             t.status, t.note] for t in run.targets]


def _concurrency_title(run: RunResult) -> str:
    c = run.concurrency
    assert c is not None
    ratio = "-" if c.ratio is None else f"{c.ratio:.2f}"
    return (f"Concurrency: {c.downloads} downloads of {c.dataset_rows:,} rows "
            f"({', '.join(c.formats)} in turn), parallel ÷ sequential rows/s = {ratio}")


def text_report(run: RunResult) -> str:
    parts = [_text_table(HEADERS, table_rows(run))]
    notes = [n for s in run.sizes for n in s.notes] + run.notes
    parts += [f"note: {n}" for n in notes]
    parts += _keyset_lines(run)
    if run.concurrency is not None:
        parts += ["", _concurrency_title(run),
                  _text_table(CONCURRENCY_HEADERS, _concurrency_rows(run))]
    if run.targets:
        parts += ["", "Targets (benchmarks/targets.toml):",
                  _text_table(TARGET_HEADERS, _target_rows(run))]
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
        "",
        "Medians over the runs. rows/s and MB/s (10^6 bytes) are seen by the client, transfer "
        "included; TTFB runs from sending the request to the first body chunk. Each service "
        "export runs on a fresh server that first serves one 1-row export of the same format "
        "(its TTFB is 'cold TTFB': the process's first request); peak RSS is that server's "
        "VmHWM (MiB) after the export. The naive endpoint gets no warm-up. "
        "vs COPY = rows/s ÷ COPY's rows/s. openpyxl: one run, rows already in memory, writing "
        "only.",
        "",
        _md_table(HEADERS, table_rows(run)),
    ]
    notes = [n for s in run.sizes for n in s.notes] + run.notes
    if notes:
        parts += [""] + [f"- {n}" for n in notes]
    keyset = _keyset_lines(run)
    if keyset:
        parts += ["", "## Keyset pages", "", keyset[0] + ".", ""]
        parts += [f"- {line.strip()}" for line in keyset[1:]]
    if run.concurrency is not None:
        parts += ["", "## Concurrency", "", _concurrency_title(run) + ".", "",
                  _md_table(CONCURRENCY_HEADERS, _concurrency_rows(run))]
    if run.targets:
        parts += ["", "## Targets", "", _md_table(TARGET_HEADERS, _target_rows(run))]
    return "\n".join(parts) + "\n"


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
    out["units"] = {"mb_per_s": "10^6 bytes/s", "peak_rss_mb": "MiB (VmHWM)",
                    "ttfb_ms": "ms", "seconds": "s"}
    return out


def _series(run: RunResult, path: str, attr: str) -> tuple[list[int], list[float]]:
    """(rows, median) of one path across the sizes, where measured."""
    points: list[tuple[int, float]] = []
    for size in run.sizes:
        summary = size.summaries.get(path)
        value = None if summary is None else getattr(summary, attr)
        if value is not None:
            points.append((size.rows, float(value)))
    return [r for r, _ in points], [v for _, v in points]


def _chart(run: RunResult, path: Path) -> str:
    if importlib.util.find_spec("matplotlib") is None:
        return "matplotlib is not installed: no chart (pip install 'matplotlib>=3.8')"
    # Imported by name: matplotlib is optional, and the chart is all that needs it.
    matplotlib: Any = importlib.import_module("matplotlib")
    matplotlib.use("Agg")
    plt: Any = importlib.import_module("matplotlib.pyplot")
    fig, (speed, memory) = plt.subplots(1, 2, figsize=(13, 5))
    # One colour per path on both plots.
    for n, name in enumerate(PATH_ORDER):
        style = {"color": f"C{n}", "linestyle": "--" if name in (COPY, NAIVE) else "-"}
        for ax, attr in ((speed, "rows_per_s"), (memory, "peak_rss_mb")):
            xs, ys = _series(run, name, attr)
            if xs:
                ax.plot(xs, ys, marker="o", label=name, **style)
    xl = [(s.rows, s.openpyxl.rows_per_s) for s in run.sizes if s.openpyxl is not None]
    if xl:
        speed.plot([r for r, _ in xl], [v for _, v in xl], marker="x", linestyle=":",
                   color=f"C{len(PATH_ORDER)}", label="openpyxl write-only")
    speed.set(xscale="log", xlabel="learners", ylabel="rows/s", title="Throughput")
    memory.set(xscale="log", yscale="log", xlabel="learners", ylabel="server peak RSS (MiB)",
               title="Peak RSS (COPY: none of ours)")
    for ax in (speed, memory):
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.suptitle(f"learner-export benchmark {run.started_at}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"chart: {path}"


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
