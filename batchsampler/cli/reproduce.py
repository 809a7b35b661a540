"""``batchsampler reproduce {graph,text,vision}``: the paper's comparisons at CPU scale.

Each modality's script lives in its integration package (``batchsampler.integrations.graph.reproduce``,
``batchsampler.integrations.text.reproduce``, ``batchsampler.integrations.vision.reproduce``);
this command forwards the remaining arguments to it, so ``batchsampler reproduce graph --help``
lists them.
"""

from __future__ import annotations

import argparse
import importlib
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
    module = importlib.import_module(MODALITIES[args.modality])
    return module.main(args.arguments)
