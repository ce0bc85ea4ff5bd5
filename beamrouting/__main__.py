"""``python -m beamrouting``: the command line."""

from beamrouting._cli import main

raise SystemExit(main())
