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

import numpy as np

__all__ = ["SharedTable", "enabled", "node_key", "segment_name"]

SHM_DIR = "/dev/shm"
PREFIX = "batchsampler-"
ENV = "BATCHSAMPLER_SHARED_MEMORY"

_created: set[str] = set()  # paths this process created and has not unlinked yet
_lock = threading.Lock()


def enabled() -> bool:
    """Whether tables may go to shared memory here (Linux, a writable /dev/shm, not disabled)."""
    if os.environ.get(ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    return sys.platform.startswith("linux") and os.path.isdir(SHM_DIR) and os.access(SHM_DIR, os.W_OK | os.X_OK)


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


def _table_bytes(num_rows: int, k: int) -> int:
    return 2 * num_rows * k * 4  # int32 neighbours, then float32 scores


class SharedTable:
    """An int32 neighbour table and a float32 score table, ``[num_rows, k]`` each, in one file.

    One process per node creates the file (:meth:`create`), the others open it (:meth:`attach`);
    then each of the ``parts`` processes reserves its slice of the pages (:meth:`reserve`: the
    zeroing of the table is split between them) and maps it (:meth:`map`). ``indices`` and
    ``scores`` are then writable views of the mapping, which is closed when the last array
    referring to it is freed.
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
        self.indices: np.ndarray | None = None
        self.scores: np.ndarray | None = None

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
        """Map the (reserved) table and close the file descriptor."""
        # MAP_POPULATE: the pages are mapped in one go, not faulted in one by one by the writes.
        flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
        try:
            buffer = mmap.mmap(self._fd, self.size, flags=flags, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            self.close()
        count = self.shape[0] * self.shape[1]
        self.indices = np.frombuffer(buffer, dtype=np.int32, count=count).reshape(self.shape)
        self.scores = np.frombuffer(buffer, dtype=np.float32, count=count, offset=4 * count).reshape(self.shape)

    def close(self) -> None:
        """Close the file descriptor if still open (a mapping stays valid)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def unlink(self) -> None:
        """Remove the name (mappings stay valid until their arrays are freed)."""
        unlink(self.path)


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
