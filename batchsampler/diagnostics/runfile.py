"""RUN.json: the file :class:`~batchsampler.diagnostics.SamplerMonitor` writes and
``batchsampler report`` reads.

RUN.json schema (``format`` ``"batchsampler-run/1"``)::

    {"format": "batchsampler-run/1",
     "runs": {"<run name>": [<epoch record>, ...], ...},
     "meta": {"batchsampler_version": str, "created": ISO-8601 UTC,
              "samplers": {"<run name>": {"class": str, "num_instances": int, "batch_size": int,
                                          "k": int, "m": int, "restart_prob": float, ...}},
              ...keys passed as ``meta=``}}

An epoch record (``null`` where a statistic does not apply)::

    {"epoch": int, "steps": int,                     # on_batch calls
     "num_indices": int, "coverage": float, "repeats": int,
     "hardness": {"mean", "q10", "q50", "q90",      # in-batch pair cosine similarity
                  "relative", "relative_by_quarter",  # on the 0-1 scale of batchsampler.hardness
                  "uniform_reference", "knn_reference"} | null,
     "hardness_source": "embeddings" | "embeddings_fn" | "bank",
     "same_label_share": float | null,               # false-negative proxy, needs labels
     "walk": {"steps", "restarts", "reseeds", "steps_per_index", "restart_share", "reseeds_per_batch"},
     "graph_version": int | null, "graph": GraphSummary fields | null,
     "graph_k": int | null, "graph_m": int | null,    # of the graph in use
     "target_hardness": float | null,
     "staleness": {"seen_share", "mean", "q50", "q90", "max", "updates"} | null,
     "timing": {"sampler_seconds", "step_seconds", "sampler_share", "timed_steps",
                "builds", "build_seconds", "stall_seconds"},
     "metrics": {str: float | null}}
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["RUN_FORMAT", "json_safe", "load_runs", "merge_runs", "write_runs"]

logger = logging.getLogger(__name__)

RUN_FORMAT = "batchsampler-run/1"
"""Value of the ``format`` key of a RUN.json document."""


def load_runs(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a RUN.json document.

    Raises:
        FileNotFoundError: if there is no such file.
        ValueError: if the file is binary, not JSON or not a ``batchsampler-run/1`` document;
            the message says what was expected.
        OSError: if it cannot be read.
    """
    expected = "expected a RUN.json file (JSON text from SamplerMonitor.to_json or `batchsampler demo`)"
    where = repr(os.fspath(path))
    if not Path(path).is_file():
        if not Path(path).exists():
            raise FileNotFoundError(f"no such file: {where} ({expected})")
        raise IsADirectoryError(f"{where} is not a file; {expected}")
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise ValueError(f"{where} is a binary file, not text; {expected}") from error
    except json.JSONDecodeError as error:
        raise ValueError(f"{where} is not JSON ({error}); {expected}") from error
    _check_document(document, where)
    return document


def merge_runs(*documents: Mapping[str, Any]) -> dict[str, Any]:
    """Combine RUN.json documents: runs are united (a later run of the same name replaces an
    earlier one, with a warning), ``meta`` is merged key by key (``samplers`` entry by entry).

    Raises:
        ValueError: if a document is not a RUN.json document, or none is given.
    """
    if not documents:
        raise ValueError("documents must hold at least one RUN.json document")
    runs: dict[str, Any] = {}
    meta: dict[str, Any] = {}
    for number, document in enumerate(documents):
        _check_document(document, f"documents[{number}]")
        for name, records in document["runs"].items():
            if name in runs:
                logger.warning("run %r appears more than once; keeping the later one", name)
            runs[name] = records
        for key, value in document.get("meta", {}).items():
            if key == "samplers" and isinstance(value, Mapping):
                meta.setdefault("samplers", {}).update(value)
            else:
                meta[key] = value
    return {"format": RUN_FORMAT, "runs": runs, "meta": meta}


def write_runs(path: str | os.PathLike, document: Mapping[str, Any]) -> None:
    """Write a RUN.json document (checked first; non-finite numbers become ``null``), atomically:
    a temporary file in the same directory, fsynced, then renamed over ``path``.

    Raises:
        ValueError: if ``document`` is not a RUN.json document.
    """
    _check_document(document, "document")
    from .._io import write_text

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(json_safe(document), indent=1, allow_nan=False) + "\n")


def _check_document(document: Any, where: str) -> None:
    if not isinstance(document, Mapping) or document.get("format") != RUN_FORMAT:
        raise ValueError(f"{where} is not a RUN.json document (format {RUN_FORMAT!r})")
    runs = document.get("runs")
    if not isinstance(runs, Mapping) or not all(isinstance(r, list) for r in runs.values()):
        raise ValueError(f"{where}: 'runs' must map run names to lists of epoch records")
    if not isinstance(document.get("meta", {}), Mapping):
        raise ValueError(f"{where}: 'meta' must be an object")


def json_safe(value: Any) -> Any:
    """Plain JSON types: NumPy scalars unwrapped, non-finite floats as ``None``."""
    if isinstance(value, Mapping):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        return value if math.isfinite(value) else None
    return value
