"""Hypothesis strategies for routing requests, sessions, call sequences and catalogues.

The engine's property tests and the Router's state machine draw from them.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from beamrouting import BackendSpec, Catalog, FallbackPolicy, Health, Policy
from tests._helpers import SCENARIO_PROFILES

__all__ = ["AFFINITY_KEYS", "DEFAULT", "PROFILE_IDS", "calls", "catalogs", "requests", "session_or_opts"]

DEFAULT = Catalog.default()
PROFILE_IDS = (*SCENARIO_PROFILES, "no-such-profile")
AFFINITY_KEYS = st.one_of(st.sampled_from(["k1", "k2", "k3"]), st.text(min_size=1, max_size=6))


def requests(
    catalog: Catalog = DEFAULT, *, profiles: bool = True, stateful: bool = False
) -> st.SearchStrategy[dict[str, Any]]:
    """Valid requests over ``catalog``: every key optional, every accepted spelling and form.

    ``stateful`` requests always name a policy and mostly reuse two affinity keys, so that
    sequences of them exercise counters and sticky bindings.
    """
    spelling = st.sampled_from(sorted(catalog.aliases))
    no_backend = st.sampled_from([None, "auto"])
    backend_list = st.one_of(
        spelling,
        st.lists(spelling, max_size=4),
        st.lists(spelling, max_size=4).map(tuple),
    )
    policy = st.sampled_from([*Policy, *(p.value for p in Policy)])
    if stateful:  # the policies with state, twice as often
        policy = st.one_of(policy, st.sampled_from(["sticky", "round_robin", Policy.STICKY]))
    affinity_key = st.sampled_from([None, "k1", "k2"]) if stateful else st.one_of(st.none(), AFFINITY_KEYS)
    optional: dict[str, st.SearchStrategy[Any]] = {
        "backend": st.one_of(spelling, no_backend),
        "preferred_backends": backend_list,
        # few exclusions, so that most requests have something eligible
        "excluded_backends": st.lists(spelling, max_size=2),
        "fallback_backends": backend_list,
        "capabilities": st.one_of(
            st.lists(st.sampled_from(catalog.capabilities), max_size=3),
            st.lists(st.sampled_from(catalog.capabilities), max_size=3).map(tuple),
        ),
        "last_backend": st.one_of(spelling, no_backend),
        "fallback_policy": st.sampled_from([*FallbackPolicy, *(p.value for p in FallbackPolicy)]),
        "health": st.dictionaries(
            spelling, st.sampled_from([*Health, *(h.value for h in Health)]), max_size=3
        ),
    }
    required: dict[str, st.SearchStrategy[Any]] = {}
    if stateful:
        required["policy"] = policy
        required["affinity_key"] = affinity_key
    else:
        optional["policy"] = policy
        optional["affinity_key"] = affinity_key
    if profiles:
        optional["policy_profile_id"] = st.one_of(st.none(), st.sampled_from(PROFILE_IDS))
    return st.fixed_dictionaries(required, optional=optional)


def session_or_opts(catalog: Catalog = DEFAULT) -> st.SearchStrategy[Any]:
    spelling = st.sampled_from(sorted(catalog.aliases))
    return st.one_of(
        st.sampled_from(["k1", "k2", "session-3"]),
        st.fixed_dictionaries(
            {},
            optional={
                "backend": st.one_of(spelling, st.sampled_from([None, "auto"])),
                "routing": requests(catalog, profiles=False, stateful=True),
                "model": st.just("ignored"),
            },
        ),
    )


def calls(catalog: Catalog = DEFAULT) -> st.SearchStrategy[tuple[Any, ...]]:
    """One call: ``(request,)`` (7 in 10), ``(session_or_opts, request)`` (2 in 10) or ``()``
    for clear() (1 in 10)."""

    def pick(draw: tuple[int, dict[str, Any], Any]) -> tuple[Any, ...]:
        kind, request, session = draw
        if kind == 0:
            return ()
        if kind <= 2:
            return (session, request)
        return (request,)

    return st.tuples(
        st.integers(0, 9),
        requests(catalog, stateful=True),
        session_or_opts(catalog),
    ).map(pick)


@st.composite
def catalogs(draw: st.DrawFn) -> Catalog:
    """Custom catalogues: 1-5 backends, aliases, partial capability support."""
    word = st.from_regex(r"[a-z][a-z0-9_]{0,7}", fullmatch=True).filter(lambda w: w != "auto")
    size = draw(st.integers(1, 5))
    words = draw(st.lists(word, min_size=size, max_size=size + 4, unique=True))
    names, alias_words = words[:size], words[size:]
    aliases: dict[str, list[str]] = {name: [] for name in names}
    for alias in alias_words:
        aliases[draw(st.sampled_from(names))].append(alias)
    capabilities = draw(st.lists(word, min_size=1, max_size=5, unique=True))
    specs = [
        BackendSpec(
            name,
            tuple(aliases[name]),
            draw(st.none() | st.lists(st.sampled_from(capabilities), unique=True).map(tuple)),
        )
        for name in names
    ]
    return Catalog(specs, capabilities)
