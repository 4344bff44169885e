"""``python -m xpnet``: the same as the ``xpnet`` command (see :mod:`xpnet.cli`)."""

from .cli import main

raise SystemExit(main())
