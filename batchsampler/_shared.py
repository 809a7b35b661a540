"""Graph tables in shared memory: one copy per node instead of one per rank.

A background graph build in distributed mode writes the neighbour table (int32 ``[N, k]``) and
the score table (float32 ``[N, k]``) into one file under ``/dev/shm`` that the ranks of a node
map (``MAP_SHARED``). Lifetime follows POSIX semantics and never depends on a call being made:

* The node's lowest rank creates the file (``O_EXCL``, mode 0600, a random name agreed over the
  sampler's build group); every rank of the node then reserves a slice of its pages with
  ``posix_fallocate`` (the cost of zeroing the table is split), so a ``/dev/shm`` too small for
  the table (Docker's default is 64 MB) fails there with ``ENOSPC`` and the node's ranks fall
  back to private tables, instead of a ``SIGBUS`` at the first write.
* As soon as every rank of the node has mapped it, the creator unlinks the name. The memory
  lives on exactly as long as some array still refers to it: the graph being walked, a graph a
  user kept, a pending graph. When the last one is garbage collected, the mapping is closed
  and the kernel frees the pages. So the old graph stays valid while the new one is built (two
  tables exist at once), and nothing can read unmapped memory.
* A name is left behind in ``/dev/shm`` only if a process is killed between creating and
  unlinking it (a window of one barrier during a build); an ``atexit`` hook unlinks the names
  this process created and has not unlinked yet. Leftovers are named ``batchsampler-*``.

Copies (pickle, ``copy.deepcopy``) of arrays backed by a table are ordinary private arrays.

**Reuse (double buffering).** Making a table costs its first touch: the kernel zeroes and maps
every page (about 0.5 s of CPU per 0.4 GB on a small VM), at every build. So a build group keeps
the tables it made in a :class:`TablePool` (at most two: the graph being walked, and the one
being built) and the next build writes into a pooled table that nothing refers to any more,
instead of a new one: from the third build on, a training run's refreshes alternate between two
tables whose pages are mapped already. A table is *free* when no array viewing it is alive in
this process (a weak reference to the one array every view keeps alive, see
:meth:`SharedTable.arrays`), and it is reused only when it is free on every rank of the node
(the ranks agree over the build group). So a graph that is still walked, kept by the user, held
by a pending build or a traceback, is never written to. A process that forks while it maps a
table (a DataLoader worker, ``os.fork``) may read it from the child, where this process cannot
see the references: every table mapped at a fork is retired, never reused. The price is memory:
between builds the node keeps the spare table mapped (the peak, two tables during a build, is
the same as without reuse); ``BuildGroup.release`` drops it, and the environment variable
``BATCHSAMPLER_TABLE_REUSE=0`` (on every rank) keeps no tables: a new one at every build, as
before reuse.

Set the environment variable ``BATCHSAMPLER_SHARED_MEMORY=0`` to keep every table private.
Only Linux with a writable ``/dev/shm`` is supported; elsewhere tables are private.
"""

from __future__ import annotations

import atexit
import mmap
import os
import socket
import sys
import threading
import weakref

import numpy as np

__all__ = ["SharedTable", "TablePool", "enabled", "node_key", "reuse_enabled", "segment_name"]

SHM_DIR = "/dev/shm"
PREFIX = "batchsampler-"
ENV = "BATCHSAMPLER_SHARED_MEMORY"
REUSE_ENV = "BATCHSAMPLER_TABLE_REUSE"

_created: set[str] = set()  # paths this process created and has not unlinked yet
_lock = threading.Lock()
_forks = 0  # forks of this process so far (and of its parents, in a child): see TablePool


def _forked() -> None:
    global _forks
    _forks += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_parent=_forked, after_in_child=_forked)


def enabled() -> bool:
    """Whether tables may go to shared memory here (Linux, a writable /dev/shm, not disabled)."""
    if os.environ.get(ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    return sys.platform.startswith("linux") and os.path.isdir(SHM_DIR) and os.access(SHM_DIR, os.W_OK | os.X_OK)


def reuse_enabled() -> bool:
    """Whether build groups keep their tables for reuse (``BATCHSAMPLER_TABLE_REUSE``, default on)."""
    return os.environ.get(REUSE_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def node_key() -> str:
    """Who can map this process's segments: equal keys see the same ``/dev/shm``.

    The kernel's boot id names the machine (hostnames repeat across containers), and the device
    and inode of ``/dev/shm`` name the filesystem (containers on one machine with their own
    ``/dev/shm`` have different ones; ``--ipc=host`` shares it).
    """
    try:
        with open("/proc/sys/kernel/random/boot_id") as handle:
            machine = handle.read().strip()
    except OSError:
        machine = socket.gethostname()
    info = os.stat(SHM_DIR)
    return f"{machine}:{info.st_dev}:{info.st_ino}"


def segment_name(token: str, build: int) -> str:
    """The file name of build ``build``'s table, from a random ``token`` the ranks agreed on."""
    return f"{PREFIX}{os.getuid()}-{token}-{build}"


_MADV_POPULATE_WRITE = getattr(mmap, "MADV_POPULATE_WRITE", 23)  # <linux/mman.h>; Python < 3.13 lacks the name


def _table_bytes(num_rows: int, k: int) -> int:
    return 2 * num_rows * k * 4  # int32 neighbours, then float32 scores


class SharedTable:
    """An int32 neighbour table and a float32 score table, ``[num_rows, k]`` each, in one file.

    One process per node creates the file (:meth:`create`), the others open it (:meth:`attach`);
    then each of the ``parts`` processes reserves its slice of the pages (:meth:`reserve`: the
    zeroing of the table is split between them) and maps it (:meth:`map`). :meth:`arrays` then
    hands out writable views of the mapping (again for a reuse, once no earlier view is alive:
    :attr:`in_use`); the mapping is closed when the last of them, and the table object, are freed.
    """

    def __init__(self, path: str, fd: int, num_rows: int, k: int) -> None:
        self.path = path
        self.size = _table_bytes(num_rows, k)
        self.shape = (num_rows, k)
        info = os.fstat(fd)
        if info.st_size != self.size:
            os.close(fd)
            raise OSError(f"shared graph table {path} has {info.st_size} bytes, expected {self.size}")
        self.inode = (info.st_dev, info.st_ino)
        self._fd: int | None = fd
        self._buffer: mmap.mmap | None = None
        self._bases: list[weakref.ref] = []  # the arrays that the views handed out keep alive
        self.generation = -1  # the fork count when mapped (see TablePool)

    @classmethod
    def create(cls, name: str, num_rows: int, k: int) -> SharedTable:
        """Create the file (its pages are not reserved yet: see :meth:`reserve`).

        Raises:
            OSError: if it exists already or cannot be created (nothing is left behind).
        """
        path = os.path.join(SHM_DIR, name)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        with _lock:
            _created.add(path)
        try:
            os.ftruncate(fd, _table_bytes(num_rows, k))
        except BaseException:
            os.close(fd)
            unlink(path)
            raise
        return cls(path, fd, num_rows, k)

    @classmethod
    def attach(cls, name: str, num_rows: int, k: int) -> SharedTable:
        """Open a table another process created.

        Raises:
            OSError: if it does not exist (e.g. on another machine) or has the wrong size.
        """
        path = os.path.join(SHM_DIR, name)
        return cls(path, os.open(path, os.O_RDWR), num_rows, k)

    def reserve(self, part: int, parts: int) -> None:
        """Allocate slice ``part`` of ``parts`` of the pages (``posix_fallocate``).

        Raises:
            OSError: ``ENOSPC`` if ``/dev/shm`` has no room for it (a write there would ``SIGBUS``).
        """
        pages = -(-self.size // mmap.PAGESIZE)
        start = pages * part // parts * mmap.PAGESIZE
        stop = min(self.size, pages * (part + 1) // parts * mmap.PAGESIZE)
        if stop > start:
            os.posix_fallocate(self._fd, start, stop - start)

    def map(self) -> None:
        """Map the (reserved) table, with its pages, and close the file descriptor."""
        generation = _forks  # read before mapping: a fork from now on retires the table
        prot = mmap.PROT_READ | mmap.PROT_WRITE
        try:
            # The pages are mapped in one go, not faulted in one by one by the writes: with
            # MADV_POPULATE_WRITE (Linux >= 5.14), measured 0.25 s against 0.4 s with MAP_POPULATE
            # per 0.8 GB (on the 2-vCPU VM of benchmarks/RESULTS.md), else with MAP_POPULATE.
            buffer = mmap.mmap(self._fd, self.size, flags=mmap.MAP_SHARED, prot=prot)
            try:
                buffer.madvise(_MADV_POPULATE_WRITE)
            except (OSError, ValueError, AttributeError):  # an older kernel (EINVAL), or no madvise
                buffer.close()
                flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
                buffer = mmap.mmap(self._fd, self.size, flags=flags, prot=prot)
            self._buffer = buffer
        finally:
            self.close()
        self.generation = generation

    @property
    def mapped(self) -> bool:
        return self._buffer is not None

    @property
    def in_use(self) -> bool:
        """Whether an array handed out by :meth:`arrays` (or any view of one) is still alive here."""
        self._bases = [ref for ref in self._bases if ref() is not None]
        return bool(self._bases)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Writable int32 and float32 ``[num_rows, k]`` views of the (mapped) table.

        Every view of them keeps one base array alive (NumPy collapses chains of views to it),
        which :attr:`in_use` watches with a weak reference.
        """
        if self._buffer is None:
            raise RuntimeError("shared graph table not mapped")
        base = np.frombuffer(self._buffer, dtype=np.uint8)
        self._bases.append(weakref.ref(base))
        count = self.shape[0] * self.shape[1]
        indices = base[: 4 * count].view(np.int32).reshape(self.shape)
        scores = base[4 * count :].view(np.float32).reshape(self.shape)
        return indices, scores

    def close(self) -> None:
        """Close the file descriptor if still open (a mapping stays valid)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def unlink(self) -> None:
        """Remove the name (mappings stay valid until their arrays are freed)."""
        unlink(self.path)


class TablePool:
    """The mapped tables of one build group, for reuse by later builds (double buffering).

    Holds at most ``capacity`` tables, oldest first. A table leaves the pool when a newer one
    needs its place (the oldest free one first) or at :meth:`clear`; it then lives on as long
    as arrays refer to it, like a table that was never pooled.
    """

    def __init__(self, capacity: int = 2) -> None:
        self.capacity = capacity
        self._tables: list[SharedTable] = []

    def __len__(self) -> int:
        return len(self._tables)

    def free(self, num_rows: int, k: int) -> list[SharedTable]:
        """Pooled tables of this shape that may be written: no view alive, not mapped before a fork."""
        return [
            t for t in self._tables
            if t.shape == (num_rows, k) and t.generation == _forks and not t.in_use
        ]

    def get(self, path: str) -> SharedTable | None:
        for table in self._tables:
            if table.path == path:
                return table
        return None

    def add(self, table: SharedTable) -> None:
        """Pool a newly mapped table, dropping the oldest free (else the oldest) beyond capacity."""
        self._tables = [t for t in self._tables if t.generation == _forks]  # retired by a fork
        self._tables.append(table)
        while len(self._tables) > self.capacity:
            idle = [t for t in self._tables[:-1] if not t.in_use]
            self._tables.remove(idle[0] if idle else self._tables[0])

    def clear(self) -> None:
        self._tables = []


def unlink(path: str) -> None:
    """Remove ``path`` if it exists and forget it."""
    with _lock:
        _created.discard(path)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


@atexit.register
def _unlink_created() -> None:
    for path in list(_created):
        unlink(path)
