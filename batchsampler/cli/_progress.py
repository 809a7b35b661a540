"""When the command line draws progress bars: tqdm's convention for non-interactive runs."""

from __future__ import annotations

import sys
from typing import IO


def progress_wanted(no_progress: bool = False, stream: IO[str] | None = None) -> bool:
    """Whether to draw progress bars: never with ``--no-progress``, else only when ``stream``
    (default: ``sys.stderr``, where tqdm draws) is an interactive terminal. Redirected to a file,
    a pipe or a CI log, bars would write a carriage-return update per step (tens of KB per run)."""
    if no_progress:
        return False
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def add_progress_flag(parser) -> None:
    """Add ``--no-progress`` to an ``argparse`` parser (``args.no_progress``)."""
    parser.add_argument(
        "--no-progress", action="store_true",
        help="never draw progress bars (they are drawn only when stderr is a terminal)",
    )
