"""Command-line entry point: ``batchsampler {build-graph,sample,demo,bench,report,reproduce} ...``.

Every file a command writes is written atomically (a temporary file in the same directory,
fsynced, then renamed over the target), so an interrupted command leaves the previous file or
none, never a truncated one. Errors in the arguments or the input files are reported as one
line, ``batchsampler COMMAND: error: ...``, on stderr with exit status 2 (argparse's
convention), not as a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .. import __version__
from .._io import atomic_write
from ..graph import ProximityGraph
from ..sampler import BatchSampler
from . import bench, demo, report, reproduce
from ._progress import add_progress_flag, progress_wanted

logger = logging.getLogger("batchsampler")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="batchsampler",
        description="Hard-negative mini-batch sampling for contrastive learning (BatchSampler, KDD 2023).",
        epilog="Exit status: 0 on success, 2 on an error in the arguments or the input files (one line on stderr).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress at INFO level")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    build = commands.add_parser(
        "build-graph",
        help="build a proximity graph from embeddings (.npy) and save it (.npz)",
        description="For every row of EMBEDDINGS, keep the k most cosine-similar of m random candidates.",
    )
    build.add_argument("embeddings", type=Path, help="float array [N, d] saved with numpy.save (.npy)")
    build.add_argument("-o", "--output", type=_suffixed(".npz"), required=True,
                       help="graph file to write; must end in .npz, lower case (written exactly there)")
    build.add_argument("--k", type=int, default=100, help="out-degree (default: %(default)s)")
    build.add_argument("--m", type=int, default=1000, help="random candidates per node; >= N-1 gives exact kNN (default: %(default)s)")
    build.add_argument("--seed", type=int, default=0, help="seed of the candidate draws (default: %(default)s)")
    build.add_argument("--symmetrize", action="store_true", help="add the reverse of every edge")
    build.add_argument("--no-scores", action="store_true", help="do not store edge similarities")
    build.add_argument("--num-threads", type=int, default=None, help="FAISS/torch threads (default: library default)")
    add_progress_flag(build)
    build.set_defaults(handler=_build_graph)

    sample = commands.add_parser(
        "sample",
        help="sample epochs of batches from a graph by random walk with restart",
        description=(
            "Walk GRAPH and write the batches: .jsonl gets one {\"epoch\", \"batch\", \"indices\"} "
            "object per line; .npy gets an int64 array [batches, batch_size] where a short last "
            "batch is padded with -1."
        ),
    )
    sample.add_argument("graph", type=Path, help="graph file from build-graph (.npz)")
    sample.add_argument("-o", "--output", type=_suffixed(".jsonl", ".npy", ignore_case=True), required=True, help="output file, .jsonl or .npy")
    sample.add_argument("--batch-size", type=int, required=True, help="indices per batch")
    sample.add_argument("--restart-prob", type=float, default=0.2, help="alpha (default: %(default)s)")
    sample.add_argument("--epochs", type=int, default=1, help="epochs to sample (default: %(default)s)")
    sample.add_argument("--seed", type=int, default=0, help="seed (default: %(default)s)")
    sample.add_argument("--replacement", action="store_true", help="independent batches, unique within a batch only")
    sample.add_argument("--drop-last", action="store_true", help="drop the smaller last batch")
    sample.set_defaults(handler=_sample)

    demo.add_parser(commands)
    bench.add_parser(commands)
    report.add_parser(commands)
    reproduce.add_parser(commands)
    return parser


def _suffixed(*suffixes: str, ignore_case: bool = False):
    """An ``argparse`` type: a :class:`Path` that must end in one of ``suffixes``."""

    def check(value: str) -> Path:
        path = Path(value)
        if (path.suffix.lower() if ignore_case else path.suffix) not in suffixes:
            raise argparse.ArgumentTypeError(
                f"{value!r} must end in {' or '.join(suffixes)} (the file is written exactly there)"
            )
        return path

    return check


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.handler(args)
    except (ValueError, TypeError, OSError) as error:  # FileNotFoundError is an OSError
        print(f"batchsampler {args.command}: error: {error}", file=sys.stderr)
        return 2


def _load_embeddings(path: Path) -> np.ndarray:
    """The float array ``[N, d]`` of a ``.npy`` file, or a ValueError that says what was expected."""
    expected = "a float array [N, d] saved with numpy.save (.npy)"
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {str(path)!r} (expected {expected})")
    with open(path, "rb") as handle:
        magic = handle.read(6)
    if magic.startswith(b"PK"):
        raise ValueError(f"{str(path)!r} is a .npz archive (a saved graph?); expected {expected}")
    if magic != b"\x93NUMPY":
        raise ValueError(f"{str(path)!r} is {'empty' if not magic else 'not a .npy file (no NumPy header)'}; expected {expected}")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:  # truncated, or an object array
        raise ValueError(f"{str(path)!r} is not {expected}: {error}") from error
    if loaded.ndim != 2 or not np.issubdtype(loaded.dtype, np.number):
        raise ValueError(f"{str(path)!r} holds a {loaded.dtype} array of shape {loaded.shape}; expected {expected}")
    return loaded


def _load_graph(path: Path) -> ProximityGraph:
    """The graph of a ``build-graph`` file, or a ValueError that says what was expected."""
    expected = "a graph .npz written by `batchsampler build-graph` (or ProximityGraph.save)"
    if path.is_file() and path.suffix.lower() != ".npz":
        kind = "a .npy array (embeddings?)" if path.suffix.lower() == ".npy" else f"a {path.suffix or 'suffix-less'} file"
        raise ValueError(f"{str(path)!r} is {kind}; expected {expected}")
    return ProximityGraph.load(path)  # its errors name the file and what was expected


def _build_graph(args: argparse.Namespace) -> int:
    embeddings = _load_embeddings(args.embeddings)
    graph = ProximityGraph.build(
        embeddings, args.k, args.m, seed=args.seed, symmetrize=args.symmetrize,
        keep_scores=not args.no_scores, num_threads=args.num_threads,
        show_progress=progress_wanted(args.no_progress),
    )
    written = graph.save(args.output)  # atomic; the path ends in .npz, so it is written as given
    if Path(written) != args.output:  # pragma: no cover - guarded by the --output check
        raise OSError(f"the graph went to {written!r}, not {str(args.output)!r}")
    in_degrees = graph.in_degrees()
    print(
        f"wrote {args.output}: {graph.num_nodes} nodes, {graph.num_edges} edges, "
        f"in-degree median {int(np.median(in_degrees))}, no in-edge {np.mean(in_degrees == 0):.2%}"
    )
    return 0


def _sample(args: argparse.Namespace) -> int:
    suffix = args.output.suffix.lower()
    if args.epochs < 1:
        raise ValueError(f"--epochs must be >= 1, got {args.epochs}")
    graph = _load_graph(args.graph)
    sampler = BatchSampler.from_graph(
        graph, args.batch_size, restart_prob=args.restart_prob, seed=args.seed,
        replacement=args.replacement, drop_last=args.drop_last,
    )
    epochs = [list(sampler) for _ in range(args.epochs)]
    if suffix == ".jsonl":
        with atomic_write(args.output, "w") as handle:
            for epoch, batches in enumerate(epochs):
                for number, batch in enumerate(batches):
                    handle.write(json.dumps({"epoch": epoch, "batch": number, "indices": batch}) + "\n")
    else:
        flat = [batch for batches in epochs for batch in batches]
        array = np.full((len(flat), args.batch_size), -1, dtype=np.int64)
        for row, batch in enumerate(flat):
            array[row, : len(batch)] = batch
        with atomic_write(args.output) as handle:  # to a handle, np.save writes exactly this path
            np.save(handle, array)
    print(f"wrote {args.output}: {args.epochs} epoch(s) x {len(sampler)} batches")
    return 0
