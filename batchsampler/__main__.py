"""``python -m batchsampler`` is the ``batchsampler`` command."""

from .cli import main

raise SystemExit(main())
