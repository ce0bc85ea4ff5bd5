"""The benchmark: every figure a ratio to a bare-Python yardstick, measured in one run.

Absolute times on a shared machine drift from minute to minute; ratios between timings
taken together, in one process, hardly do. So each cell (:mod:`._bench_cells`) reports its
cost in µs per selection *and* its ratio to a reference measured beside it: mostly
:func:`~._bench_cells.bare`, a few lines of plain Python making the same decision, or the
same thing in another configuration (a bigger catalogue, a full state, learning on).
Targets are printed beside each figure, with met or not met.

How it measures: every repetition runs every cell once (repetitions are interleaved, not
one cell five times in a row); each cell warms up, collects garbage, then times its series
with :func:`time.perf_counter` in alternating chunks; the figures are medians over the
repetitions (a cell's ratio is the median of its per-repetition ratios). Router cells run
in ``anyio.run`` on their backend (uvloop with ``use_uvloop``). ``beamrouting bench`` and
``python -m benchmarks`` both run it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from beamrouting import Catalog

from ._argtypes import comma_separated, positive_float, positive_int
from ._backends import BACKENDS, MissingBackend, installed, require, run_on
from ._bench_cells import CAPS, GROUPS, PTF, ROUTER_CAP, RR, Budget, Cell, cells_for, probes_for
from ._console import Output

__all__ = [
    "BACKENDS",
    "GROUPS",
    "BenchConfig",
    "BenchReport",
    "BenchSetupError",
    "CellResult",
    "add_bench_arguments",
    "config_from_args",
    "markdown_report",
    "markdown_table",
    "plot_report",
    "print_report",
    "readme_table",
    "run_benchmark",
    "table_rows",
    "update_readme",
]

QUICK_CAP_LIMIT: Final = 1_000_000
"""``--quick`` leaves out the state-cap cells of this cap and above."""
README_BEGIN: Final = "<!-- benchmark table: written by python -m benchmarks --readme -->"
README_END: Final = "<!-- end of benchmark table -->"


@dataclass(frozen=True)
class BenchConfig:
    """What to measure and for how long."""

    backends: tuple[str, ...] = BACKENDS
    """The async backends the router cells may run on (others are skipped)."""
    groups: tuple[str, ...] = GROUPS
    """The groups of cells to run (see :data:`~._bench_cells.GROUPS`)."""
    calls: int = 20_000
    """Operations per series and repetition (the state-cap cells run their cap's size)."""
    duration: float | None = None
    """Seconds per series and repetition; when set it replaces ``calls``."""
    repeat: int = 3
    """Interleaved repetitions; the medians are reported."""
    caps: tuple[int, ...] = CAPS
    """The engine's state caps (``--quick`` leaves out 1,000,000)."""
    router_cap: int = ROUTER_CAP
    redis_url: str | None = None
    quick: bool = False

    def cells(self) -> list[Cell]:
        """The cells this configuration reports (skipped ones included)."""
        return [
            cell
            for cell in cells_for(self.caps, self.router_cap)
            if cell.group in self.groups and (cell.group != "redis" or self.redis_url is not None)
        ]

    def skipped(self, backend: str | None) -> str | None:
        """Why cells on ``backend`` are skipped, or ``None`` when they run."""
        if backend is None:
            return None
        if not installed(backend):
            return f"{backend} is not installed"
        if backend not in self.backends:
            return f"{backend} is not among --backends"
        return None

    def steps(self) -> int:
        """How many measurements one run takes (for progress bars)."""
        probes = probes_for(self.cells())
        return self.repeat * sum(1 for p in probes if self.skipped(p.backend) is None)


@dataclass
class CellResult:
    """One cell: medians over the repetitions."""

    key: str
    group: str
    label: str
    versus: str
    backend: str | None
    """The async backend (``None``: a synchronous cell, no event loop)."""
    us: float | None
    """µs per operation (median over the repetitions)."""
    reference_us: float | None
    """µs per operation of what it is compared with, measured beside it."""
    ratio: float | None
    """The median of the per-repetition ratios (1.0 for a yardstick)."""
    target: float | None
    comparison: str | None
    """``"<="`` (a cost ratio, the target its maximum) or ``">="`` (a throughput ratio)."""
    met: bool | None
    ratios: list[float] = field(default_factory=list)
    samples_us: list[float] = field(default_factory=list)
    skipped: str | None = None


@dataclass
class BenchReport:
    """A benchmark run: its settings, the environment and every cell."""

    config: dict[str, Any]
    environment: dict[str, Any]
    results: list[CellResult]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible data."""
        return {
            "config": self.config,
            "environment": self.environment,
            "yardstick": {"PTF": PTF, "RR": RR},
            "cells": [asdict(r) for r in self.results],
        }

    def cell(self, key: str) -> CellResult | None:
        """The result of the cell ``key``, if it was run."""
        return next((r for r in self.results if r.key == key), None)


# --------------------------------------------------------------------------- running


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):  # not on every platform
        return None


def _environment() -> dict[str, Any]:
    from importlib import metadata

    versions: dict[str, str | None] = {}
    for dist in ("beamrouting", "anyio", "msgspec", "uvloop", "trio", "redis"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    if versions["beamrouting"] is None:  # running from a source tree that is not installed
        from beamrouting import __version__

        versions["beamrouting"] = __version__
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpus": os.cpu_count(),
        "versions": versions,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average_start": _load(),
    }


def run_benchmark(config: BenchConfig, progress: Callable[[str], None] | None = None) -> BenchReport:
    """Run every cell ``config.repeat`` times, interleaved, and report the medians.

    ``progress`` is called once per finished measurement with its description
    (``config.steps()`` calls in all).
    """
    for backend in config.backends:
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
    for group in config.groups:
        if group not in GROUPS:
            raise ValueError(f"unknown group of cells {group!r} (choose from {', '.join(GROUPS)})")
    environment = _environment()
    cells = config.cells()
    probes = [p for p in probes_for(cells) if config.skipped(p.backend) is None]
    step = progress if progress is not None else (lambda _description: None)
    samples: dict[str, list[dict[str, float]]] = {p.name: [] for p in probes}
    run_prefix = f"beamrouting-bench:{os.getpid()}:{time.time_ns()}:"
    for repetition in range(config.repeat):
        budget = Budget(
            config.calls,
            config.duration,
            flip=repetition % 2 == 1,
            redis_url=config.redis_url,
            redis_prefix=f"{run_prefix}{repetition}:",
        )
        for probe in probes:
            if probe.backend is None:
                measured = probe.measure(budget)
            else:
                measured = run_on(probe.backend, probe.measure, budget)
            samples[probe.name].append(measured)
            step(probe.description)
    environment["load_average_end"] = _load()
    results = [_result(cell, config, samples.get(cell.probe, [])) for cell in cells]
    config_dict = {
        "backends": list(config.backends),
        "groups": list(config.groups),
        "calls": config.calls,
        "duration": config.duration,
        "repeat": config.repeat,
        "quick": config.quick,
        "caps": list(config.caps),
        "router_cap": config.router_cap,
        "redis": config.redis_url is not None,
    }
    return BenchReport(config_dict, environment, results)


def _result(cell: Cell, config: BenchConfig, runs: list[dict[str, float]]) -> CellResult:
    probe = probes_for([cell])[0]
    comparison = None if cell.target is None else (">=" if cell.throughput else "<=")
    result = CellResult(
        cell.key,
        cell.group,
        cell.label,
        cell.versus,
        probe.backend,
        None,
        None,
        None,
        cell.target,
        comparison,
        None,
        skipped=config.skipped(probe.backend),
    )
    if not runs:
        return result
    subject = [run[cell.subject] for run in runs]
    result.samples_us = [round(s * 1e6, 4) for s in subject]
    result.us = statistics.median(subject) * 1e6
    if cell.reference is None:
        result.ratios = [1.0] * len(runs)
    else:
        reference = [run[cell.reference] for run in runs]
        result.reference_us = statistics.median(reference) * 1e6
        result.ratios = [round(cell.ratio(s, r), 4) for s, r in zip(subject, reference, strict=True)]
    result.ratio = statistics.median(result.ratios)
    result.met = cell.met(result.ratio)
    return result


# --------------------------------------------------------------------------- reporting

TABLE_HEADERS: Final = ("cell", "what", "on", "µs", "vs", "ref µs", "ratio", "target", "")


def _us(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:,.0f}" if value >= 1000 else f"{value:.2f}"


def _ratio(result: CellResult) -> str:
    if result.ratio is None:
        return ""
    return f"{result.ratio:.2f}" if result.comparison == ">=" else f"{result.ratio:.2f}x"


def _target(result: CellResult) -> str:
    if result.target is None:
        return ""
    if result.comparison == ">=":
        return f"≥ {result.target:g}"
    return f"≤ {result.target:g}x"


def _verdict(result: CellResult) -> str:
    if result.skipped is not None:
        return f"skipped: {result.skipped}"
    if result.met is None:
        return ""
    return "met" if result.met else "NOT MET"


def table_rows(report: BenchReport) -> list[tuple[str, ...]]:
    """The result table, one row per cell, in the cells' order."""
    return [
        (
            r.key,
            r.label,
            r.backend or "-",
            _us(r.us),
            r.versus or "(yardstick)",
            _us(r.reference_us),
            _ratio(r),
            _target(r),
            _verdict(r),
        )
        for r in report.results
    ]


def _summary(report: BenchReport) -> str:
    judged = [r for r in report.results if r.met is not None]
    missed = [r.key for r in judged if not r.met]
    text = f"{len(judged) - len(missed)} of {len(judged)} targets met"
    return text + (f"; not met: {', '.join(missed)}" if missed else "")


def print_report(out: Output, report: BenchReport) -> None:
    """Print the result table and how many targets were met."""
    out.table(
        TABLE_HEADERS,
        table_rows(report),
        title="beamrouting benchmark: µs per operation and ratios, medians of interleaved repetitions",
        right=(3, 5, 6),
    )
    load = report.environment.get("load_average_start")
    if load:
        out.line(f"load average at start: {load[0]:.2f} (1 min)")
    out.line(_summary(report), style="bold")


def _md_row(values: Sequence[str]) -> str:
    return "| " + " | ".join(v.replace("|", "\\|") for v in values) + " |"


def markdown_table(report: BenchReport) -> str:
    """Every cell as a markdown table: µs, what it is compared with, ratio, target, met."""
    lines = [
        _md_row(("cell", "what", "on", "µs", "vs", "ref µs", "ratio", "target", "met")),
        "|---|---|---|--:|---|--:|--:|---|---|",
    ]
    for row in table_rows(report):
        lines.append(_md_row(row))
    return "\n".join(lines) + "\n"


def readme_table(report: BenchReport) -> str:
    """A compact markdown table for the README: one row per cell with a ratio."""
    lines = ["| cell | on | µs | ratio | vs | target |", "|---|---|--:|--:|---|---|"]
    for r in report.results:
        if r.ratio is None:
            continue
        target = _target(r)
        if target:
            target += " " + ("met" if r.met else "**not met**")
        lines.append(
            _md_row((r.label, r.backend or "-", _us(r.us), _ratio(r), r.versus or "(yardstick)", target))
        )
    return "\n".join(lines) + "\n"


def _environment_line(report: BenchReport) -> str:
    env = report.environment
    load = env.get("load_average_start")
    end = env.get("load_average_end")
    where = f"Python {env['python']} ({env['implementation']}) on {env['platform']}, {env['cpus']} CPUs, {env['date']}"
    if load:
        where += f"; load average (1, 5, 15 min) {load[0]}, {load[1]}, {load[2]} at the start"
        if end:
            where += f", {end[0]}, {end[1]}, {end[2]} at the end"
    return where + "."


def markdown_report(report: BenchReport) -> str:
    """The run as a markdown document: environment, settings, the table and how to read it."""
    cfg = report.config
    versions = ", ".join(f"{k} {v}" for k, v in report.environment["versions"].items() if v)
    size = f"{cfg['duration']} s" if cfg["duration"] else f"{cfg['calls']:,} operations"
    out = [
        "# beamrouting benchmark",
        "",
        _environment_line(report),
        f"Versions: {versions}.",
        "",
        f"{cfg['repeat']} interleaved repetition{'s' if cfg['repeat'] != 1 else ''} (every cell once "
        f"per repetition), medians reported; {size} per series and repetition, in alternating chunks "
        "(a tenth of that for router.session()); the state-cap cells run their cap's size twice "
        "(filling, then full).",
        "",
        markdown_table(report),
        _summary(report) + ".",
        "",
        "## How to read it",
        "",
        "- **µs**: time per operation (one selection, one report, one session entered and left);",
        "  for the 100-caller cells, wall time over selections.",
        "- **ratio**: the median of the per-repetition ratios to the **vs** series, measured in",
        "  the same cell beside it. `x` ratios are costs (lower is better, the target a",
        "  maximum); plain ones are throughputs (higher is better, the target a minimum).",
        "- **bare PTF / bare RR**: the yardstick, a plain-Python decision for the requests",
        f"  `PTF = {json.dumps(PTF)}` and `RR = {json.dumps(RR)}` (see `beamrouting/_cli/_bench_cells.py`).",
        "- **on**: the async backend (`-`: synchronous, no event loop).",
        "",
    ]
    return "\n".join(out)


def update_readme(path: str | Path, report: BenchReport) -> None:
    """Replace the table between the README's benchmark markers with :func:`readme_table`.

    Raises :class:`ValueError` when the file lacks the markers.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    begin, end = text.find(README_BEGIN), text.find(README_END)
    if begin < 0 or end < begin:
        raise ValueError(f"{path} has no benchmark table markers ({README_BEGIN!r} ... {README_END!r})")
    head = text[: begin + len(README_BEGIN)]
    body = f"\n\n{readme_table(report)}\n{_environment_line(report)}\n\n"
    path.write_text(head + body + text[end:], encoding="utf-8")


def plot_report(report: BenchReport, path: str | Path) -> None:
    """Draw each cell's ratio against its target (needs matplotlib, the ``plot`` extra)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report.results if r.ratio is not None and r.group != "yardstick"]
    fig, ax = plt.subplots(figsize=(10, 0.42 * len(rows) + 1.5))
    labels = [f"{r.key}" + (f" ({r.backend})" if r.backend and r.backend not in r.key else "") for r in rows]
    colors = ["tab:gray" if r.met is None else "tab:green" if r.met else "tab:red" for r in rows]
    positions = list(range(len(rows)))
    ax.barh(positions, [r.ratio or 0.0 for r in rows], color=colors)
    for y, r in zip(positions, rows, strict=True):
        if r.target is not None:
            ax.plot([r.target, r.target], [y - 0.4, y + 0.4], color="black", linewidth=2)
    ax.axvline(1.0, color="black", alpha=0.3, linestyle="--")
    ax.set_yticks(positions, labels, fontsize="small")
    ax.invert_yaxis()
    ax.set_xlabel("ratio (x: cost vs reference, lower is better; others: throughput, higher is better)")
    ax.set_title("beamrouting benchmark: ratios (bars) and targets (black ticks); green met, red not")
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- command-line options


class _Removed(argparse.Action):
    """An option of the old benchmark that the cells made meaningless: passing it is a usage error."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        parser.error(
            f"{option_string} is no longer an option: every cell fixes its own policy and callers "
            "(use --cells to choose cells)"
        )


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """The benchmark's options (shared by ``beamrouting bench`` and ``python -m benchmarks``)."""
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a short run: 2,000 operations per series, one repetition, no 1,000,000 state-cap cell",
    )
    parser.add_argument(
        "--cells",
        type=comma_separated(GROUPS, "group of cells"),
        metavar="G,...",
        help=f"groups of cells to run (default: all: {','.join(GROUPS)}; redis needs --redis)",
    )
    parser.add_argument(
        "--backends",
        type=comma_separated(BACKENDS, "backend"),
        metavar="B,...",
        help="async backends the router cells may use (default: the installed ones of asyncio,uvloop,trio); "
        "cells on others are skipped",
    )
    for removed in ("--policies", "--concurrency"):
        parser.add_argument(
            removed,
            action=_Removed,
            nargs="?",
            help=argparse.SUPPRESS,  # removed (each cell fixes its own policy and callers): an error
        )
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--calls",
        type=positive_int,
        metavar="N",
        help="operations per series and repetition (default: 20000; the state-cap cells run their cap's size)",
    )
    size.add_argument(
        "--duration",
        type=positive_float,
        metavar="SECONDS",
        help="seconds per series and repetition, instead of --calls",
    )
    parser.add_argument(
        "--repeat", type=positive_int, metavar="N", help="interleaved repetitions (default: 3)"
    )
    parser.add_argument("--json", dest="json_path", metavar="FILE", help="write the results as JSON")
    parser.add_argument(
        "--plot", dest="plot_path", metavar="FILE", help="draw a PNG chart (needs the plot extra)"
    )
    parser.add_argument(
        "--redis",
        metavar="URL",
        help="also measure 100 round-robin callers on a RedisStore at URL against the same in memory",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


class BenchSetupError(ValueError):
    """The benchmark cannot run as asked (a backend not installed, an output that cannot be written)."""


def _check_output(option: str, path: str | None) -> None:
    if path is None:
        return
    folder = Path(path).resolve().parent
    if not folder.is_dir():
        raise BenchSetupError(f"cannot write {option} {path!r}: the folder {str(folder)!r} does not exist")
    if not os.access(folder, os.W_OK):
        raise BenchSetupError(f"cannot write {option} {path!r}: the folder {str(folder)!r} is not writable")


def config_from_args(args: argparse.Namespace, catalog: Catalog | None = None) -> BenchConfig:
    """A :class:`BenchConfig` from parsed :func:`add_bench_arguments` options.

    Checked before anything runs: a backend asked for by name must be installed (without
    ``--backends`` the installed ones are measured), the ``--json`` and ``--plot`` files
    must be writable, and no custom catalogue is given (the cells are defined on the
    default one, the yardstick's). Raises :class:`BenchSetupError` saying what to do otherwise.
    """
    defaults = BenchConfig()
    quick = bool(args.quick)
    if catalog is not None:
        raise BenchSetupError(
            "the benchmark's cells are defined on the default catalogue (the yardstick's): drop --catalog"
        )
    if args.backends is None:
        backends = tuple(b for b in defaults.backends if installed(b))
    else:
        try:
            backends = tuple(require(b) for b in args.backends)
        except MissingBackend as exc:
            raise BenchSetupError(str(exc)) from None
    if args.cells is not None and "redis" in args.cells and args.redis is None:
        raise BenchSetupError("--cells redis needs --redis URL")
    _check_output("--json", args.json_path)
    _check_output("--plot", args.plot_path)
    return BenchConfig(
        backends=backends,
        groups=args.cells or defaults.groups,
        calls=args.calls or (2_000 if quick else defaults.calls),
        duration=args.duration,
        repeat=args.repeat or (1 if quick else defaults.repeat),
        caps=tuple(c for c in CAPS if c < QUICK_CAP_LIMIT) if quick else CAPS,
        router_cap=ROUTER_CAP,
        redis_url=args.redis,
        quick=quick,
    )
