"""The authors' approach, re-implemented (in our own code) as the baseline of the benchmarks.

What the released BatchSampler script does (see shared/specs/reference-method.md), kept here
on purpose, quirks included, so that speed-ups are measured against it in the same run:

* **Graph**: for each chunk of ``N / 20`` nodes, every node draws ``M`` random candidates *with
  replacement* (self and duplicates possible), gathered one node at a time into an
  ``(N / 20) x M x d`` tensor; a batched matrix multiply scores them and top-``K`` keeps the
  neighbours. Scores are dropped.
* **Walk**: a single walker in Python. Each batch starts from a seed chosen among nodes not yet
  used in the epoch, found by rebuilding a Python set of the used nodes; the walker restarts
  with probability alpha, else moves to a random neighbour, and collects nodes that are new
  *to the batch* (uniqueness holds inside a batch only). Batches are produced until their union
  covers the data; there is no step cap (we add one, 100 * B steps, only so that a benchmark
  cannot hang: it never triggers on these graphs). When fewer than ``B`` nodes are left
  unused, they form the last, small batch.
"""

from __future__ import annotations

import random

import numpy as np
import torch


def naive_graph(
    x: np.ndarray,
    k: int,
    m: int,
    seed: int = 0,
    chunks: int = 20,
    max_nodes: int | None = None,
    workspace: torch.Tensor | None = None,
) -> np.ndarray:
    """Neighbour ids ``[N, k]`` (or ``[max_nodes, k]``: only the first ``max_nodes`` rows).

    Args:
        x: ``[N, d]`` embeddings.
        k, m: the paper's K and M.
        seed: torch seed.
        chunks: the node set is scored in this many chunks (the authors use 20).
        max_nodes: stop after this many nodes (to time a prefix and extrapolate when the full
            run would take too long or the chunk tensor would not fit in memory).
        workspace: a preallocated ``[>= chunk, m, d]`` float tensor to gather into. Timing a
            prefix with a workspace already faulted in leaves out the one-off allocation, which
            would otherwise be charged ``N / prefix`` times by the extrapolation.
    """
    generator = torch.Generator().manual_seed(seed)
    z = torch.nn.functional.normalize(torch.from_numpy(np.asarray(x, dtype=np.float32)), dim=1)
    n, dim = z.shape
    stop = n if max_nodes is None else min(n, max_nodes)
    chunk = -(-n // chunks)
    neighbors = torch.empty((stop, k), dtype=torch.int64)
    gathered = torch.empty((min(chunk, stop), m, dim)) if workspace is None else workspace  # (N / 20) x M x d
    for start in range(0, stop, chunk):
        rows = range(start, min(stop, start + chunk))
        for i, node in enumerate(rows):  # one node at a time, as in the released script
            candidates = torch.randint(n, (m,), generator=generator)
            gathered[i] = z[candidates]
            if i == 0:
                block_candidates = torch.empty((len(rows), m), dtype=torch.int64)
            block_candidates[i] = candidates
        sims = torch.bmm(gathered[: len(rows)], z[start : start + len(rows)].unsqueeze(2)).squeeze(2)
        top = torch.topk(sims, k, dim=1).indices
        neighbors[start : start + len(rows)] = torch.gather(block_candidates, 1, top)
    return neighbors.numpy()


def naive_epoch(
    neighbors: np.ndarray, batch_size: int, restart_prob: float, seed: int = 0, max_batches: int | None = None
) -> list[list[int]]:
    """One epoch of the authors' walk: batches until every node was used at least once.

    Args:
        neighbors: ``[N, k]`` neighbour ids.
        batch_size: ``B``.
        restart_prob: alpha.
        seed: seed of Python's ``random``.
        max_batches: stop after this many batches (for timing a prefix).
    """
    rnd = random.Random(seed)
    n, k = neighbors.shape  # kept as an array: a list of lists would take ~4 GB at N = 1e6
    used: list[int] = []
    batches = []
    while max_batches is None or len(batches) < max_batches:
        used_set = set(used)  # rebuilt for every batch, as in the released script
        remaining = [node for node in range(n) if node not in used_set]
        if len(remaining) < batch_size:  # the leftovers form one small batch
            if remaining:
                batches.append(remaining)
            break
        seed_node = rnd.choice(remaining)
        batch, in_batch = [seed_node], {seed_node}
        current, steps = seed_node, 0
        target = min(batch_size, n)
        while len(batch) < target and steps < 100 * batch_size:
            steps += 1
            if rnd.random() < restart_prob:
                current = seed_node
            else:
                current = int(neighbors[current, rnd.randrange(k)])
            if current not in in_batch:
                in_batch.add(current)
                batch.append(current)
        used.extend(batch)
        batches.append(batch)
    return batches
