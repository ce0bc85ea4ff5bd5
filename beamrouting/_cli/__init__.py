"""The ``beamrouting`` command line: commands, console output, the demo and the benchmark runner.

It uses the library's public names only (``beamrouting``, ``beamrouting.store``,
``beamrouting.testing``), as any other program would.
"""

from ._main import main

__all__ = ["main"]
