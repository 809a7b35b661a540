"""``batchsampler reproduce {graph,text,vision}``: the paper's comparisons at CPU scale.

Each modality's script lives in its integration package (``batchsampler.integrations.graph.reproduce``,
``batchsampler.integrations.text.reproduce``, ``batchsampler.integrations.vision.reproduce``);
this command forwards the remaining arguments to it, so ``batchsampler reproduce graph --help``
lists them. The scripts import their optional dependencies (the ``graph`` and ``text`` extras)
only after their arguments are parsed, so ``--help`` works without them; a run without them
stops with one line that names the extra to install.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

MODALITIES = {
    "graph": "batchsampler.integrations.graph.reproduce",
    "text": "batchsampler.integrations.text.reproduce",
    "vision": "batchsampler.integrations.vision.reproduce",
}
"""Modality name -> module with a ``main(argv)``."""


def add_parser(commands: Any) -> None:
    reproduce = commands.add_parser(
        "reproduce",
        help="run a reproduction grid (uniform vs kNN vs BatchSampler) for one modality",
        description=__doc__.split("\n\n")[0],
    )
    reproduce.add_argument("modality", choices=sorted(MODALITIES), help="which pipeline")
    reproduce.add_argument("arguments", nargs=argparse.REMAINDER, help="passed on (see MODALITY --help)")
    reproduce.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..integrations import extra_for

    try:
        module = importlib.import_module(MODALITIES[args.modality])
        return module.main(args.arguments)
    except ModuleNotFoundError as error:
        extra = extra_for(error)
        if extra is None:
            raise
        message = str(error) if getattr(error, "extra", None) else (
            f"needs the {error.name!r} module, which is not installed: pip install \"batchsampler[{extra}]\""
        )
        print(f"batchsampler reproduce {args.modality}: error: {message}", file=sys.stderr)
        return 2
