"""``beamrouting demo``: an orchestrator starting tens of thousands of agent sessions.

A few hundred session-start coroutines share one :class:`beamrouting.Router` and route a
realistic mix: sticky by workspace, round robin, capability first, explicit, preferred
then fallback, some under a restrictive policy profile, and a failover whenever a session
fails to start on its backend. Midway one backend goes ``down`` (the health every request
carries says so) and later recovers, and the routing-table actor is crashed and restarted
by its supervisor.

Every backend has a limit of live sessions. A session holds its slot while it runs, and a
start that finds every backend it may use full waits for a slot (``wait=``). The router
also learns from outcomes: one backend refuses a session for its quota and cools down
until its reset time, while the fleet routes around it; another starts failing, is ejected
after ``failure_threshold`` consecutive failures (each failed start moves its session with
:meth:`beamrouting.RouterSession.failover`) and is probed back in
when its ejection ends. Time is the demo's own: a clock that advances with every session
started, handed to the store (``clock=``), so a 60-second cooldown passes within a run of a
few seconds and a seed routes alike on every run. A monitor samples
:meth:`beamrouting.Router.backend_states` throughout, and a
subscription to the journal's ``backend_health`` events dates every status change.

The run then checks its own invariants:

* every session was routed or failed with a typed error;
* no decision chose a backend its request marked down;
* every sticky workspace stayed on one backend, except those an outage or a failover moved;
* the crashed actor was restarted, and routing went on after it with its state intact;
* every session was unregistered at the end;
* no backend ever had more live sessions than its limit;
* no session went to the cooling backend before its reset time;
* the ejected backend took no session while ejected, and at most ``probe_sessions`` probes
  while probing;
* the cooled and the ejected backends were healthy again at the end.
"""

from ._report import DemoReport, Invariant, print_demo
from ._run import run_demo
from ._setup import COOLDOWN, PROFILE_ID, DemoConfig

__all__ = ["COOLDOWN", "PROFILE_ID", "DemoConfig", "DemoReport", "Invariant", "print_demo", "run_demo"]
