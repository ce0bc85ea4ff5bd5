"""``python -m benchmarks``: run the benchmark and record the results.

Writes ``<out>/<name>.json`` and ``<out>/<name>.md`` (default ``benchmarks/results/latest``)
and, when matplotlib is installed, ``<out>/<name>.png``; ``--json`` and ``--plot`` write
extra copies where you say, and ``--readme`` rewrites the table of the README's
Performance section. Every option of ``beamrouting bench`` works here too (``--quick``,
``--cells``, ``--backends``, ``--calls``/``--duration``, ``--repeat``, ``--redis``).
The measuring code is in :mod:`beamrouting._cli._bench`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from beamrouting._cli._bench import (
    BenchSetupError,
    add_bench_arguments,
    config_from_args,
    markdown_report,
    plot_report,
    print_report,
    run_benchmark,
    update_readme,
)
from beamrouting._cli._console import Output

RESULTS = Path(__file__).resolve().parent / "results"
README = Path(__file__).resolve().parent.parent / "README.md"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark the engine and the router against a bare-Python yardstick and record the results.",
    )
    add_bench_arguments(parser)
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"results directory (default: {RESULTS})")
    parser.add_argument("--name", default="latest", help="base name of the result files (default: latest)")
    parser.add_argument(
        "--readme",
        type=Path,
        nargs="?",
        const=README,
        metavar="FILE",
        help=f"rewrite the benchmark table of the README's Performance section (default FILE: {README})",
    )
    parser.add_argument("--plain", action="store_true", help="plain text output even when rich is installed")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the table, and write the results."""
    args = _parser().parse_args(argv)
    out = Output(plain=args.plain)
    try:
        config = config_from_args(args)
    except BenchSetupError as exc:
        out.error(f"python -m benchmarks: {exc}")
        return 2
    plotting = importlib.util.find_spec("matplotlib") is not None
    if args.plot_path and not plotting:
        out.error("python -m benchmarks: --plot needs matplotlib (pip install 'beamrouting[plot]')")
        return 2
    if args.readme is not None and not args.readme.is_file():
        out.error(f"python -m benchmarks: --readme: no such file {str(args.readme)!r}")
        return 2
    with out.progress(config.steps(), "benchmark", enabled=not args.no_progress) as bar:
        report = run_benchmark(config, lambda description: bar.advance(1, description))
    print_report(out, report)
    args.out.mkdir(parents=True, exist_ok=True)
    data = json.dumps(report.to_dict(), indent=2) + "\n"
    written = [args.out / f"{args.name}.json", args.out / f"{args.name}.md"]
    written[0].write_text(data, encoding="utf-8")
    written[1].write_text(markdown_report(report), encoding="utf-8")
    if args.json_path:
        Path(args.json_path).write_text(data, encoding="utf-8")
        written.append(Path(args.json_path))
    if plotting:
        plot = Path(args.plot_path) if args.plot_path else args.out / f"{args.name}.png"
        plot_report(report, plot)
        written.append(plot)
    if args.readme is not None:
        try:
            update_readme(args.readme, report)
        except ValueError as exc:
            out.error(f"python -m benchmarks: {exc}")
            return 2
        written.append(args.readme)
    for path in written:
        out.line(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
