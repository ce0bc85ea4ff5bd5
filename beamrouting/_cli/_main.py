"""The ``beamrouting`` command line (also ``python -m beamrouting``).

Commands: ``demo``, ``select``, ``explain``, ``backends`` and ``bench``, and the operator's
commands against a fleet's Redis: ``states``, ``report``, ``restore``, ``release`` and
``watch``. Every command takes ``--config FILE``; flags given beside it override the file.
Exit status: 0 on success, 1 when a request cannot be routed (its code and message are
printed) or the store cannot be reached, 2 on bad input (invalid JSON, an invalid request,
an unreadable catalogue or configuration, a bad option), 130 when interrupted. Errors are
one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Sequence
from typing import Any, Final, NoReturn

from beamrouting import BeamRoutingError, Catalog, Explanation, RouteDecision, RoutingError

from ._argtypes import positive_int
from ._common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_ROUTING,
    EXIT_USAGE,
    PROG,
    SELECTION_CODES,
    UsageError,
    config_from_args,
    json_argument,
    redis_store,
    require_backend,
    router_from_config,
    routing_failure,
)
from ._console import Output
from ._fleet import FLEET_COMMANDS, add_fleet_commands

__all__ = ["main"]

_OPTION_KEYS: Final = frozenset({"backend", "routing"})
"""What the command line reads of session options (the library ignores any other key)."""

_EXAMPLES: Final = """\
examples:
  beamrouting demo
  beamrouting select '{"policy": "round_robin"}' --repeat 3
  beamrouting select '{"policy": "sticky"}' --session sess-42 --json
  beamrouting explain '{"capabilities": ["hooks"], "health": {"codex": "down"}}'
  beamrouting backends --catalog my-backends.toml
  beamrouting select '{"policy": "weighted"}' --config beamrouting.toml
  beamrouting bench --quick
  beamrouting states --redis redis://localhost:6379/0
  beamrouting report codex quota --retry-after 600 --redis redis://localhost:6379/0
  beamrouting watch --config fleet.toml
"""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line and an exception, not an exit."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see --help)")


# --------------------------------------------------------------------------- parsing


def _build_parser() -> _Parser:
    from ._backends import BACKENDS, default_backend
    from ._bench import add_bench_arguments

    def add_common_options(target: argparse.ArgumentParser, default: Any) -> None:
        target.add_argument(
            "--config",
            metavar="FILE",
            default=default,
            help="a configuration file (.toml or .json): catalogue, profiles, health, limits, weights, store",
        )
        target.add_argument(
            "--catalog",
            metavar="FILE",
            default=default,
            help="a custom catalogue of backends (.toml or .json) instead of the default",
        )
        target.add_argument(
            "--plain",
            action="store_true",
            default=default if default is argparse.SUPPRESS else False,
            help="plain text output even when rich is installed",
        )

    # The common options go before or after the subcommand. After it, they are suppressed
    # when absent so they do not overwrite what was given before it.
    common = _Parser(add_help=False)
    add_common_options(common, argparse.SUPPRESS)

    parser = _Parser(
        prog=PROG,
        description="Decide which AI coding-agent backend a new agent session starts on.",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from beamrouting import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    add_common_options(parser, None)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def command(name: str, summary: str, description: str) -> _Parser:
        """Add the subcommand ``name``, with the common options."""
        return commands.add_parser(name, parents=[common], help=summary, description=description)

    demo = command(
        "demo",
        "route tens of thousands of sessions through one router, with an outage and a crash",
        "Play an orchestrator: concurrent session starts through one Router with a realistic "
        "policy mix, a backend outage and recovery, and an actor crash and restart; then check invariants.",
    )
    demo.add_argument(
        "--sessions", type=positive_int, default=30_000, help="sessions to start (default: 30000)"
    )
    demo.add_argument(
        "--concurrency", type=positive_int, default=300, help="concurrent session starters (default: 300)"
    )
    demo.add_argument("--seed", type=int, default=7, help="seed of the request mix (default: 7)")
    demo.add_argument(
        "--backend",
        choices=BACKENDS,
        default=default_backend(),
        help="async backend (default: uvloop if installed)",
    )
    demo.add_argument("--redis", metavar="URL", help="share state through Redis (RedisStore) at URL")
    demo.add_argument("--json", action="store_true", help="print the summary as JSON")
    demo.add_argument("--no-progress", action="store_true", help="no progress bar")

    select = command(
        "select",
        "route one request and print the decision",
        "Route REQUEST (a JSON object; '-' reads stdin) and print the decision.",
    )
    select.add_argument("request", metavar="REQUEST", help="the request as a JSON object")
    origin = select.add_mutually_exclusive_group()
    origin.add_argument("--session", metavar="ID", help="route from a session id (its affinity key)")
    origin.add_argument("--opts", metavar="OPTIONS", help="route from session options (a JSON object)")
    select.add_argument(
        "--repeat", type=positive_int, default=1, metavar="N", help="route N times on one router"
    )
    select.add_argument("--json", action="store_true", help="print each decision as a line of JSON")
    select.add_argument("--redis", metavar="URL", help="share state through Redis (RedisStore) at URL")

    explain = command(
        "explain",
        "show why a request routes where it does",
        "Explain REQUEST: every backend in or out and why, the candidate sets and the decision. "
        "Exits 1 when the request would not route.",
    )
    explain.add_argument("request", metavar="REQUEST", help="the request as a JSON object")
    explain.add_argument("--json", action="store_true", help="print the explanation as JSON")

    backends = command(
        "backends",
        "list the catalogue: backends, aliases and capabilities",
        "Show the catalogue: backends in available order, their aliases and the capability matrix.",
    )
    backends.add_argument("--json", action="store_true", help="print the catalogue as JSON")

    bench = command(
        "bench",
        "benchmark the engine and the router against a bare-Python yardstick",
        "Measure the engine, the router (1 and 100 callers, on asyncio, uvloop and trio), a large "
        "catalogue, full state, learning and capacity, each as a ratio to a reference measured "
        "beside it (mostly a bare-Python decision), with its target and whether it is met.",
    )
    add_bench_arguments(bench)
    add_fleet_commands(command)
    return parser


# --------------------------------------------------------------------------- commands


def _decision_rows(decisions: Sequence[RouteDecision]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for n, d in enumerate(decisions, 1):
        rows.append(
            (
                str(n),
                d.backend,
                d.policy.value,
                ", ".join(d.candidates),
                ", ".join(d.fallback_chain) or "-",
                "; ".join(d.reasons),
                d.affinity_key or "-",
            )
        )
    return rows


def _cmd_select(args: argparse.Namespace, out: Output) -> int:
    config = config_from_args(args)
    request = json_argument(args.request, "REQUEST")
    origin: Any = None
    if args.session is not None:
        if not args.session:
            raise UsageError("--session needs a non-empty session id")
        origin = args.session
    elif args.opts is not None:
        origin = json_argument(args.opts, "OPTIONS")
        if not isinstance(origin, dict):
            raise UsageError(
                "OPTIONS must be a JSON object (session options with 'backend' and/or 'routing')"
            )
        unknown = sorted(key for key in origin if key not in _OPTION_KEYS)
        if unknown:
            raise UsageError(f"OPTIONS may hold 'backend' and 'routing', not {unknown[0]!r}")
    router = router_from_config(config)

    async def run() -> tuple[list[RouteDecision], RoutingError | None]:
        decisions: list[RouteDecision] = []
        error: RoutingError | None = None
        async with router:
            for _ in range(args.repeat):
                try:
                    if origin is None:
                        decision = await router.select_backend(request)
                    else:
                        decision = await router.select_backend(origin, request)
                except RoutingError as exc:
                    error = exc
                    break
                decisions.append(decision)
                if args.json:
                    print(json.dumps(decision.to_dict()), file=out.stdout)
        return decisions, error

    import anyio

    decisions, error = anyio.run(run)
    if not args.json and len(decisions) == 1:
        d = decisions[0]
        out.table(
            ("field", "value"),
            [
                ("backend", d.backend),
                ("policy", d.policy.value),
                ("candidates", ", ".join(d.candidates)),
                ("fallback chain", ", ".join(d.fallback_chain) or "-"),
                ("reasons", "; ".join(d.reasons)),
                ("affinity key", d.affinity_key or "-"),
                ("policy profile", d.policy_profile_id or "-"),
            ],
            title="Decision",
        )
    elif not args.json and decisions:
        out.table(
            ("#", "backend", "policy", "candidates", "fallback chain", "reasons", "affinity key"),
            _decision_rows(decisions),
            title="Decisions",
            right=(0,),
        )
    if error is not None:
        if args.json:
            print(json.dumps({"error": error.to_dict()}), file=out.stdout)
        return routing_failure(out, error)
    return EXIT_OK


def _cmd_explain(args: argparse.Namespace, out: Output) -> int:
    router = router_from_config(config_from_args(args))
    request = json_argument(args.request, "REQUEST")

    async def run() -> Explanation:
        async with router:
            explanation: Explanation = await router.explain(request)
        return explanation

    import anyio

    try:
        explanation = anyio.run(run)
    except RoutingError as exc:
        return routing_failure(out, exc)
    if args.json:
        print(json.dumps(explanation.to_dict(), indent=2), file=out.stdout)
    else:
        _print_explanation(explanation, out)
    if explanation.error is not None:
        code = explanation.error.get("code", "")
        detail = json.dumps(explanation.error.get("detail"), sort_keys=True)
        kind = "cannot route" if code in SELECTION_CODES else "bad request"
        out.error(f"{PROG}: {kind}: {code}; detail: {detail}")
        return EXIT_ROUTING if code in SELECTION_CODES else EXIT_USAGE
    return EXIT_OK


def _print_explanation(e: Explanation, out: Output) -> None:
    def names(items: Sequence[str]) -> str:
        return ", ".join(items) if items else "(none)"

    out.line("request: " + json.dumps(e.request, sort_keys=True))
    out.table(
        ("backend", "health", "eligible", "why not"),
        [
            (v.backend, v.health.value, "yes" if v.eligible else "no", "; ".join(v.reasons) or "-")
            for v in e.backends
        ],
        title="Backends (available order)",
    )
    out.table(
        ("set", "backends"),
        [
            ("eligible", names(e.eligible)),
            ("preferred", names(e.preferred)),
            ("fallback", names(e.fallback)),
            ("remaining", names(e.remaining)),
            ("ordered", names(e.ordered)),
        ],
        title="Candidate sets",
    )
    if e.decision is not None:
        d = e.decision
        out.line(f"decision: {d.backend} (policy {d.policy.value}): {'; '.join(d.reasons)}")
        out.line(f"candidates: {names(d.candidates)}; fallback chain: {names(d.fallback_chain)}")
    elif e.error is not None:
        out.line(
            f"decision: none; would fail with {e.error.get('code')}: {json.dumps(e.error.get('detail'))}"
        )


def _cmd_backends(args: argparse.Namespace, out: Output) -> int:
    catalog = config_from_args(args).catalog
    if args.json:
        print(json.dumps(catalog.to_dict(), indent=2), file=out.stdout)
        return EXIT_OK
    out.table(
        ("#", "backend", "aliases", "capabilities"),
        [
            (
                str(i),
                b,
                ", ".join(catalog.aliases_of(b)) or "-",
                f"{len(catalog.supported(b))}/{len(catalog.capabilities)}",
            )
            for i, b in enumerate(catalog.backends, 1)
        ],
        title="Backends (available order)",
        right=(0, 3),
    )
    out.table(
        ("capability", *catalog.backends),
        [
            (c, *("yes" if catalog.supports(b, c) else "-" for b in catalog.backends))
            for c in catalog.capabilities
        ],
        title="Capability matrix",
    )
    return EXIT_OK


def _cmd_bench(args: argparse.Namespace, out: Output) -> int:
    from ._bench import BenchSetupError, plot_report, print_report, run_benchmark
    from ._bench import config_from_args as bench_config

    configured = config_from_args(args)
    catalog = configured.catalog
    args.redis = configured.store.url if configured.store.kind == "redis" else None
    if args.redis is not None:
        redis_store(args.redis, catalog)
    if args.plot_path is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise UsageError("--plot needs the plot extra: pip install 'beamrouting[plot]'") from None
    try:
        config = bench_config(args, None if catalog == Catalog.default() else catalog)
    except BenchSetupError as exc:
        raise UsageError(str(exc)) from None
    with out.progress(config.steps(), "benchmark", enabled=not args.no_progress) as bar:
        report = run_benchmark(config, lambda description: bar.advance(1, description))
    print_report(out, report)
    if args.json_path:
        _write(args.json_path, json.dumps(report.to_dict(), indent=2) + "\n")
        out.line(f"wrote {args.json_path}")
    if args.plot_path:
        plot_report(report, args.plot_path)
        out.line(f"wrote {args.plot_path}")
    return EXIT_OK


def _write(path: str, text: str) -> None:
    try:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        raise UsageError(f"cannot write {path!r}: {exc.strerror or exc}") from None


def _cmd_demo(args: argparse.Namespace, out: Output) -> int:
    from ._demo import DemoConfig, print_demo, run_demo

    configured = config_from_args(args)
    catalog = configured.catalog
    args.redis = configured.store.url if configured.store.kind == "redis" else None
    require_backend(args.backend)
    redis_store(args.redis, catalog, args.backend)
    config = DemoConfig(
        sessions=args.sessions,
        concurrency=args.concurrency,
        seed=args.seed,
        backend=args.backend,
        catalog=catalog,
        redis_url=args.redis,
        config=configured if args.config is not None else None,
    )
    if not args.json:
        out.line(
            f"demo: {config.sessions:,} sessions, {config.concurrency} concurrent starters, seed {config.seed}, "
            f"{config.backend}" + (", Redis store" if config.redis_url else ", in-memory store")
        )
    with out.progress(
        config.sessions, "routing sessions", enabled=not (args.no_progress or args.json)
    ) as bar:
        report = run_demo(config, lambda done, phase: bar.update(done, phase))
    if args.json:
        print(json.dumps(report.to_dict(), indent=2), file=out.stdout)
    else:
        print_demo(report, out)
    if not report.ok:
        failed = [inv.name for inv in report.invariants if not inv.ok]
        out.error(f"{PROG}: demo invariant failed: {'; '.join(failed)}")
        return EXIT_ROUTING
    return EXIT_OK


_COMMANDS: Final = {
    "demo": _cmd_demo,
    "select": _cmd_select,
    "explain": _cmd_explain,
    "backends": _cmd_backends,
    "bench": _cmd_bench,
    **FLEET_COMMANDS,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    out = Output(plain=True)
    try:
        parser = _build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help and --version
            return exc.code if isinstance(exc.code, int) else EXIT_OK
        if args.command is None:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        out = Output(plain=args.plain)
        return _COMMANDS[args.command](args, out)
    except UsageError as exc:
        out.error(f"{PROG}: {exc}" if not str(exc).startswith(PROG) else str(exc))
        return EXIT_USAGE
    except RoutingError as exc:
        return routing_failure(out, exc)
    except BeamRoutingError as exc:
        out.error(f"{PROG}: {type(exc).__name__}: {exc}")
        return EXIT_ROUTING
    except KeyboardInterrupt:
        out.error(f"{PROG}: interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly, and keep the interpreter's final
        # flush from complaining about the closed pipe.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:
        if os.environ.get("BEAMROUTING_DEBUG"):
            raise
        out.error(
            f"{PROG}: internal error: {type(exc).__name__}: {exc} (set BEAMROUTING_DEBUG=1 for a traceback)"
        )
        return 70
