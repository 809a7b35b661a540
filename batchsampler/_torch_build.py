"""Graph construction in torch on a chosen device (``ProximityGraph.build(..., device=...)``).

The same graph as the NumPy path of :mod:`batchsampler._build`, computed where the embeddings
live (a GPU, or torch on the CPU):

* **Random candidates.** The plan (anchor order, every block's ``m + 1`` candidates, the
  masked column of every anchor) is the NumPy plan of :func:`batchsampler._knn.plan_random`,
  drawn on the CPU from the same generator, so the candidate sets are identical. Groups of
  blocks are scored by one batched GEMM (``[G, B, d] x [G, d, m + 1]``), the anchor itself or
  the surplus candidate is set to ``-inf`` exactly as the NumPy kernel does, and ``torch.topk``
  keeps the ``k`` best. In float32 the similarities are the NumPy ones computed the same way
  (raw dot products times the two inverse norms, in that order), so the graphs agree up to
  float rounding of the GEMM (bit for bit where the products are exact, e.g. on
  integer-valued embeddings) and the order of exact ties.
* **Exact kNN.** Blocked all-pairs GEMM of unit rows against column chunks, with a running
  top-``k`` (chunk top-``k``, merged with the running one), the node itself excluded; the
  final order is by decreasing similarity, ties by increasing id, as the NumPy heaps give.
  With a CUDA device and FAISS's GPU build installed (``pip install batchsampler[gpu]``),
  FAISS's brute-force GPU kNN (``faiss.knn_gpu``) is used instead (``index_params``
  ``{"faiss_gpu": False}`` keeps the torch path; ``True`` requires FAISS).
* **Precision.** ``"float32"`` (default; on CUDA it follows torch's TF32 setting,
  ``torch.backends.cuda.matmul.allow_tf32``, off by default), or ``"bfloat16"`` /
  ``"float16"``: unit rows are cast once and the GEMM runs in that type (float32
  accumulation on GPUs), so the scores are rounded to it and near-ties may be resolved
  differently from float32; the result is still a valid graph.

Only the int32 neighbour table (and float32 scores) come back to the CPU. On CUDA the build
runs on its own stream, so that a background build does not serialise with the training
loop's kernels on the default stream.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

PRECISIONS = ("float32", "bfloat16", "float16")
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# Similarities held at once by one step of a build (the [G, B, m + 1] block group of the
# random backend, the [rows, columns] tile of the exact one): 256 MB of float32 on CUDA, 16 MB
# on the CPU (a CPU GEMM gains nothing from larger operands and memory stays small).
_STEP_FLOATS = {"cuda": 1 << 26, "cpu": 1 << 22}
_NORM_ROWS = 1 << 16  # rows per chunk of the float64 squared norms (bounded temporaries)
_FAISS_GPU_MAX_K = 2048  # largest k FAISS's GPU k-selection supports
_FAISS_QUERY_ROWS = 1 << 16


# ---------------------------------------------------------------------- arguments


def resolve_device(device: Any) -> torch.device:
    """``device`` as a :class:`torch.device` the build can use: the CPU or an available CUDA device.

    Raises:
        TypeError: if ``device`` is not a string or a ``torch.device``.
        ValueError: naming ``device``, if it is not a device, not a CPU or CUDA device, or CUDA
            (or that CUDA device) is not available.
    """
    if isinstance(device, torch.device):
        resolved = device
    elif isinstance(device, str):
        try:
            resolved = torch.device(device)
        except (RuntimeError, ValueError):
            raise ValueError(
                f"device must be 'cpu', 'cuda', 'cuda:<index>' or a torch.device, got {device!r}"
            ) from None
    else:
        raise TypeError(f"device must be a str or a torch.device (or None), got {type(device).__name__} ({device!r})")
    if resolved.type == "cpu":
        return torch.device("cpu")
    if resolved.type != "cuda":
        raise ValueError(f"device must be a CPU or CUDA device, got {device!r} (device type {resolved.type!r})")
    if not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r}, but CUDA is not available (torch {torch.__version__}: "
            "torch.cuda.is_available() is False); pass device='cpu' or None"
        )
    count = torch.cuda.device_count()
    if resolved.index is not None and resolved.index >= count:
        raise ValueError(f"device={device!r}, but only {count} CUDA device(s) are visible")
    return resolved


def build_device(device: Any, embeddings: Any) -> torch.device:
    """:func:`resolve_device`, with the index of a bare ``"cuda"`` filled in: the device of
    ``embeddings`` when it is a CUDA tensor (no copy between GPUs), else the current one."""
    resolved = resolve_device(device)
    if resolved.type == "cuda" and resolved.index is None:
        if isinstance(embeddings, torch.Tensor) and embeddings.is_cuda:
            return embeddings.device
        return torch.device("cuda", torch.cuda.current_device())
    return resolved


def check_precision(precision: Any, device: torch.device | None) -> str:
    """``precision`` as one of :data:`PRECISIONS` (torch dtypes accepted).

    Raises:
        ValueError: naming ``precision``, if it is unknown, or low precision without a device
            (the NumPy build computes in float32).
    """
    name = precision
    if isinstance(precision, torch.dtype):
        name = {dtype: key for key, dtype in _DTYPES.items()}.get(precision, str(precision))
    if not isinstance(name, str) or name not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if device is None and name != "float32":
        raise ValueError(
            f"precision={name!r} needs a torch device (device='cpu' or 'cuda'): the NumPy build "
            "(device=None) computes in float32"
        )
    return name


def _numpy_dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def to_tensor_2d(name: str, array: Any, device: torch.device) -> torch.Tensor:
    """``array`` as a finite 2-D float tensor on ``device``, checked as :func:`to_numpy_2d` does.

    A tensor already on ``device`` is used as it is (detached; no host round trip); one on
    another device is moved there. Low-precision floats are widened to float32, as on the
    NumPy path. Same errors and messages as :func:`batchsampler._validation.to_numpy_2d`.
    """
    if not isinstance(array, torch.Tensor):
        from ._validation import to_numpy_2d

        return torch.from_numpy(np.ascontiguousarray(to_numpy_2d(name, array))).to(device)
    tensor = array.detach()
    if tensor.dtype == torch.bool or tensor.is_complex():
        raise TypeError(f"{name} must be a numeric array, got dtype {_numpy_dtype_name(tensor.dtype)}")
    if tensor.ndim != 2:
        raise ValueError(f"{name} must be 2-D [num_rows, dim], got shape {tuple(tensor.shape)}")
    if tensor.shape[0] == 0 or tensor.shape[1] == 0:
        raise ValueError(f"{name} must be non-empty, got shape {tuple(tensor.shape)}")
    tensor = tensor.to(device)
    if tensor.is_floating_point():
        if tensor.dtype not in (torch.float32, torch.float64):
            tensor = tensor.float()
        low, high = torch.aminmax(tensor)  # NaN propagates; one scalar pair comes back
        if not bool(torch.isfinite(low) & torch.isfinite(high)):
            raise ValueError(f"{name} contains NaN or infinite values")
    return tensor


def row_squares(x: torch.Tensor) -> torch.Tensor:
    """float64 ``[N]`` squared norms, in row chunks (no ``[N, d]`` float64 temporary)."""
    out = torch.empty(x.shape[0], dtype=torch.float64, device=x.device)
    for start in range(0, x.shape[0], _NORM_ROWS):
        chunk = x[start : start + _NORM_ROWS].to(torch.float64)
        out[start : start + _NORM_ROWS] = torch.einsum("ij,ij->i", chunk, chunk)
    return out


def check_rows(x: torch.Tensor, report_zero) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """The device version of ``_build._check_rows``: ``(x, squares, has_zero)``.

    ``report_zero(count)`` is called with the number of all-zero rows (the warning is the
    NumPy path's). Rows whose float32 products could overflow are scaled to unit norm, as
    there; ``x`` comes back float32, ``squares`` its float64 squared norms.
    """
    squares = row_squares(x)
    zero = int((squares == 0).sum())
    if zero:
        report_zero(zero)
    limit = float(np.finfo(np.float32).max) / 4
    if not float(squares.max()) > limit:  # also catches inf (float64 overflow)
        if x.dtype != torch.float32:
            x = x.float()
            squares = row_squares(x)  # the norms of what is multiplied, as on the NumPy path
        return x, squares, zero > 0
    out = torch.empty(x.shape, dtype=torch.float32, device=x.device)
    for start in range(0, x.shape[0], _NORM_ROWS):
        chunk = x[start : start + _NORM_ROWS].to(torch.float64)
        scale = chunk.abs().amax(dim=1, keepdim=True)
        chunk = chunk / torch.where(scale > 0, scale, torch.ones_like(scale))
        norms = torch.linalg.vector_norm(chunk, dim=1, keepdim=True)
        out[start : start + _NORM_ROWS] = chunk / torch.where(norms > 0, norms, torch.ones_like(norms))
    return out, row_squares(out), zero > 0


def inverse_norms(squares: torch.Tensor) -> torch.Tensor:
    """float32 ``1 / |x_i|`` from float64 squared norms, as :func:`batchsampler._knn.inverse_norms`."""
    tiny = float(np.finfo(np.float32).tiny)
    return (1.0 / torch.clamp(torch.sqrt(squares), min=tiny)).to(torch.float32)


def unit_rows(x: torch.Tensor) -> torch.Tensor:
    """float32 unit rows (zero rows stay zero), as ``_build._normalize_rows``."""
    norms = torch.linalg.vector_norm(x, dim=1, keepdim=True)
    return x / torch.clamp(norms, min=float(np.finfo(np.float32).tiny))


class _DeviceScope:
    """``torch.no_grad()`` and, on CUDA, a side stream that waits for the caller's stream."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._contexts: list[Any] = []

    def __enter__(self) -> _DeviceScope:
        self._contexts = [torch.no_grad()]
        if self.device.type == "cuda":
            stream = torch.cuda.Stream(device=self.device)
            stream.wait_stream(torch.cuda.current_stream(self.device))
            self._contexts.append(torch.cuda.stream(stream))
        for context in self._contexts:
            context.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        for context in reversed(self._contexts):
            context.__exit__(*exc)


def _step_floats(device: torch.device) -> int:
    return _STEP_FLOATS["cuda" if device.type == "cuda" else "cpu"]


# ---------------------------------------------------------------------- random candidates


def random_rows(
    x: torch.Tensor,
    squares: torch.Tensor,
    k: int,
    plan: Any,
    blocks: list[int],
    *,
    slot_order: bool,
    precision: str,
    has_zero: bool,
    keep_scores: bool,
    show_progress: bool,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Top ``k`` of every anchor of ``blocks`` of ``plan`` (see :func:`batchsampler._knn.random_rows`).

    Args:
        x: float32 ``[N, d]`` embeddings on the build device (any scale).
        squares: float64 ``[N]`` squared norms of ``x``.
        plan: the :class:`~batchsampler._knn.RandomPlan` (NumPy, on the CPU).
        blocks: block numbers to compute, increasing.
        slot_order: ``False``: rows in node order (all blocks, ``R = N``); ``True``: rows in
            the order of the blocks' anchor slots.
        has_zero: some rows are all zero (their products with zero rows are NaN in float32:
            treated as never selected, as the NumPy selection does).

    Returns:
        ``(neighbors, scores)``: int32 ``[R, k]`` by decreasing similarity and float32
        ``[R, k]`` (``None`` unless ``keep_scores``), on the CPU.
    """
    device = x.device
    n = x.shape[0]
    size, width = plan.block_size, plan.candidates.shape[1]
    inv = inverse_norms(squares)
    low = precision != "float32"
    if low:  # cast once: unit rows, so products are cosines and cannot overflow
        x = (x * inv[:, None]).to(_DTYPES[precision])
    group = max(1, _step_floats(device) // (size * width))
    blocks = np.asarray(blocks, dtype=np.int64)
    count = n if not slot_order else int(sum(plan.block_rows(b).stop - plan.block_rows(b).start for b in blocks))
    neighbors = torch.empty((count, k), dtype=torch.int32, device=device)
    scores = torch.empty((count, k), dtype=torch.float32, device=device) if keep_scores else None
    anchors = torch.from_numpy(plan.anchors).to(device)
    masked = torch.from_numpy(plan.masked).to(device)
    offsets = torch.arange(size, device=device)
    written = 0
    with tqdm(total=blocks.size, desc="proximity graph", unit="block", disable=not show_progress) as bar:
        for start in range(0, blocks.size, group):
            chosen = blocks[start : start + group]
            g = chosen.size
            candidate_ids = torch.from_numpy(plan.candidates[chosen]).to(device)  # [G, W]
            slots = torch.from_numpy(chosen).to(device)[:, None] * size + offsets  # [G, B]
            valid = slots < n  # only the last block of the plan can be short
            slots = torch.clamp(slots, max=n - 1)
            anchor_ids = anchors[slots]  # [G, B]
            sims = torch.bmm(x[anchor_ids], x[candidate_ids].transpose(1, 2))  # [G, B, W]
            if low:
                sims = sims.float()
            else:  # cosines as the compiled NumPy kernel computes them: (product / |a|) / |c|
                sims.mul_(inv[anchor_ids][:, :, None]).mul_(inv[candidate_ids][:, None, :])
                if has_zero:
                    sims.nan_to_num_(nan=-float("inf"), posinf=float("inf"), neginf=-float("inf"))
            sims.scatter_(2, masked[slots][:, :, None], -float("inf"))
            values, columns = torch.topk(sims, k, dim=2, largest=True, sorted=True)
            ids = torch.gather(candidate_ids[:, None, :].expand(g, size, width), 2, columns)
            values, ids, valid = values.reshape(g * size, k), ids.reshape(g * size, k), valid.reshape(-1)
            if not bool(valid.all()):
                values, ids, slots_kept = values[valid], ids[valid], slots.reshape(-1)[valid]
            else:
                slots_kept = slots.reshape(-1)
            if slot_order:
                out = slice(written, written + ids.shape[0])
                written += ids.shape[0]
                neighbors[out] = ids.to(torch.int32)
                if scores is not None:
                    scores[out] = values
            else:
                rows = anchors[slots_kept]
                neighbors[rows] = ids.to(torch.int32)
                if scores is not None:
                    scores[rows] = values
            bar.update(g)
    return neighbors.cpu().numpy(), None if scores is None else scores.cpu().numpy()


# ---------------------------------------------------------------------- exact kNN


def _merge_top(values: torch.Tensor, ids: torch.Tensor, new_values: torch.Tensor, new_ids: torch.Tensor, k: int):
    values = torch.cat([values, new_values], dim=1)
    ids = torch.cat([ids, new_ids], dim=1)
    top, where = torch.topk(values, min(k, values.shape[1]), dim=1)
    return top, torch.gather(ids, 1, where)


def _order_by_value_then_id(values: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows sorted by decreasing value, equal values by increasing id (the NumPy heaps' order)."""
    ids, order = torch.sort(ids, dim=1)
    values = torch.gather(values, 1, order)
    values, order = torch.sort(values, dim=1, descending=True, stable=True)
    return values, torch.gather(ids, 1, order)


def exact_rows(
    x: torch.Tensor,
    k: int,
    rows: np.ndarray,
    *,
    precision: str,
    index_params: dict[str, Any] | None,
    show_progress: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine kNN of ``rows`` (self excluded) against all ``N`` rows of unit ``x``.

    Args:
        x: float32 ``[N, d]`` unit rows on the build device.
        rows: int64 ``[R]`` nodes to compute (all, or a shard's tiles).
        index_params: ``{"faiss_gpu": None | bool}`` (see the module docstring).

    Returns:
        ``(neighbors, scores)``: int32 ``[R, k]`` by decreasing similarity (ties by increasing
        id), float32 ``[R, k]``, on the CPU.
    """
    params = dict(index_params or {})
    unknown = set(params) - {"faiss_gpu"}
    if unknown:
        raise ValueError(f"index_params: unknown keys {sorted(unknown)} for 'exact' on a device; known: ['faiss_gpu']")
    use_faiss = _use_faiss_gpu(params.get("faiss_gpu"), x.device, k)
    device = x.device
    n = x.shape[0]
    if precision != "float32":
        x = x.to(_DTYPES[precision])
    row_ids = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.int64)).to(device)
    neighbors = torch.empty((row_ids.numel(), k), dtype=torch.int32, device=device)
    scores = torch.empty((row_ids.numel(), k), dtype=torch.float32, device=device)
    if use_faiss:
        _faiss_exact(x, k, row_ids, neighbors, scores, show_progress)
    else:
        budget = _step_floats(device)
        chunk_rows = max(1, min(row_ids.numel(), 8192 if device.type == "cuda" else 2048))
        chunk_cols = max(k + 1, budget // chunk_rows)
        row_starts = range(0, row_ids.numel(), chunk_rows)
        for r0 in tqdm(row_starts, desc="exact kNN", unit="tile", disable=not show_progress):
            query_ids = row_ids[r0 : r0 + chunk_rows]
            queries = x[query_ids]
            best_values = torch.empty((query_ids.numel(), 0), dtype=torch.float32, device=device)
            best_ids = torch.empty((query_ids.numel(), 0), dtype=torch.int64, device=device)
            for c0 in range(0, n, chunk_cols):
                c1 = min(n, c0 + chunk_cols)
                sims = (queries @ x[c0:c1].T).float()
                inside = (query_ids >= c0) & (query_ids < c1)  # the node itself: never its own neighbour
                if bool(inside.any()):
                    which = torch.nonzero(inside).reshape(-1)
                    sims[which, query_ids[which] - c0] = -float("inf")
                top, where = torch.topk(sims, min(k, c1 - c0), dim=1)
                best_values, best_ids = _merge_top(best_values, best_ids, top, where + c0, k)
            best_values, best_ids = _order_by_value_then_id(best_values, best_ids)
            neighbors[r0 : r0 + query_ids.numel()] = best_ids.to(torch.int32)
            scores[r0 : r0 + query_ids.numel()] = best_values
    return neighbors.cpu().numpy(), scores.cpu().numpy()


# ---------------------------------------------------------------------- FAISS on the GPU

_faiss_lock = threading.Lock()
_faiss_resources: dict[int, Any] = {}


def faiss_gpu_count() -> int:
    """CUDA devices FAISS can use (0 with the CPU build of FAISS, or without FAISS)."""
    try:
        import faiss
    except ImportError:  # pragma: no cover - faiss-cpu is a dependency
        return 0
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get is not None else 0


def _use_faiss_gpu(choice: Any, device: torch.device, k: int) -> bool:
    if choice is not None and not isinstance(choice, bool):
        raise ValueError(f"index_params['faiss_gpu'] must be None, True or False, got {choice!r}")
    available = device.type == "cuda" and faiss_gpu_count() > 0
    if choice is None:
        return available and k + 1 <= _FAISS_GPU_MAX_K
    if choice and not available:
        raise ValueError(
            "index_params={'faiss_gpu': True} needs a CUDA device and FAISS's GPU build "
            "(pip install 'batchsampler[gpu]'); faiss.get_num_gpus() is "
            f"{faiss_gpu_count()}, device is {device}"
        )
    if choice and k + 1 > _FAISS_GPU_MAX_K:
        raise ValueError(f"index_params={{'faiss_gpu': True}}: FAISS's GPU kNN supports k < {_FAISS_GPU_MAX_K}, got k={k}")
    return choice


def _gpu_index(device: torch.device) -> int:
    return device.index if device.index is not None else torch.cuda.current_device()


def faiss_resources(gpu: int) -> Any:
    """One ``faiss.StandardGpuResources`` per GPU (512 MB of scratch memory), created once."""
    import faiss

    if gpu not in _faiss_resources:
        resources = faiss.StandardGpuResources()
        resources.setTempMemory(512 << 20)  # the default reserves ~18 % of the GPU's memory
        _faiss_resources[gpu] = resources
    return _faiss_resources[gpu]


def _faiss_exact(x, k, row_ids, neighbors, scores, show_progress) -> None:  # pragma: no cover - needs faiss-gpu
    import faiss
    import faiss.contrib.torch_utils  # noqa: F401  (torch tensors in faiss.knn_gpu)

    gpu = _gpu_index(x.device)
    with _faiss_lock:
        resources = faiss_resources(gpu)
        starts = range(0, row_ids.numel(), _FAISS_QUERY_ROWS)
        for r0 in tqdm(starts, desc="exact kNN (FAISS GPU)", disable=not show_progress):
            query_ids = row_ids[r0 : r0 + _FAISS_QUERY_ROWS]
            values, ids = faiss.knn_gpu(
                resources, x[query_ids].contiguous(), x, k + 1, metric=faiss.METRIC_INNER_PRODUCT, device=gpu
            )
            # Drop the node itself where it is among the results, else the last result.
            drop = (ids == query_ids[:, None]) | (ids < 0)
            order = torch.sort(drop.to(torch.int8), dim=1, stable=True).indices[:, :k]
            values, ids = torch.gather(values, 1, order), torch.gather(ids, 1, order)
            values, ids = _order_by_value_then_id(values, ids)
            neighbors[r0 : r0 + query_ids.numel()] = ids.to(torch.int32)
            scores[r0 : r0 + query_ids.numel()] = values
