"""Crash-safe file writes and checked ``.npz`` reads, shared by every file the package writes.

A file is written to a temporary name in the target's directory, flushed and fsynced, then
renamed over the target with :func:`os.replace` (atomic on POSIX and Windows). A process
killed mid-write therefore leaves either the old file or the new one, never a truncated mix.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import IO, Any

import numpy as np

__all__ = ["atomic_write", "load_npz", "npz_path", "save_npz", "write_text"]


def _current_umask() -> int:
    # os.umask can only be read by setting it; done once, at import, before any thread starts.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def npz_path(path: str | os.PathLike) -> str:
    """The file a ``.npz`` save or load uses for ``path``: ``path`` itself if it ends in
    ``.npz``, else ``path + ".npz"`` (NumPy's rule for ``np.savez``)."""
    path = os.fspath(path)
    if not isinstance(path, str):
        raise TypeError(f"path must be a str or os.PathLike of str, got {type(path).__name__}")
    return path if path.endswith(".npz") else path + ".npz"


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on a clean exit fsync it and rename it to ``path``.

    On an exception the temporary file is removed and ``path`` is left as it was. The new file
    gets the usual permissions (``0o666`` minus the umask), not ``mkstemp``'s ``0o600``.

    Args:
        path: the target file. Its directory must exist.
        mode: ``"wb"`` (default) or ``"w"`` (text, UTF-8).
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o666 & ~_UMASK)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _fsync_directory(directory)


def _fsync_directory(directory: str) -> None:
    # Makes the rename itself durable; not possible on every platform (Windows), so best effort.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> str:
    """Write ``arrays`` to an uncompressed ``.npz`` file atomically; returns the path written
    (:func:`npz_path` of ``path``)."""
    target = npz_path(path)
    with atomic_write(target) as handle:
        np.savez(handle, **arrays)
    return target


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to exactly ``path``, atomically."""
    with atomic_write(path, "w") as handle:
        handle.write(text)


def load_npz(path: str | os.PathLike, what: str) -> dict[str, np.ndarray]:
    """Read every array of the ``.npz`` file :func:`npz_path` names, fully, into a dict.

    Args:
        path: as given to the matching save.
        what: what the file should be (e.g. ``"a BatchSampler checkpoint"``), for messages.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if it is empty, truncated, damaged, not a ``.npz`` archive, or holds pickled
            objects (whatever the zip and NumPy parsers raise is reported as this one error).
        PermissionError, IsADirectoryError: as raised by the file system.
    """
    target = npz_path(path)
    if not os.path.exists(target):
        raise FileNotFoundError(f"no such file: {target!r} (expected {what})")
    if os.path.getsize(target) == 0:
        raise ValueError(f"{target!r} is empty; expected {what} (.npz)")
    try:
        loaded = np.load(target, allow_pickle=False)
    except (PermissionError, IsADirectoryError):
        raise
    except Exception as error:  # noqa: BLE001 - whatever a damaged file makes the parsers raise
        raise ValueError(f"{target!r} is not {what} (truncated or not a .npz archive: {error!r})") from error
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ValueError(f"{target!r} holds a single array (.npy data); expected {what} (.npz)")
    try:
        with loaded as data:
            return {name: data[name] for name in data.files}
    except Exception as error:  # noqa: BLE001 - zipfile raises BadZipFile, RuntimeError, NotImplementedError, zlib.error...
        raise ValueError(f"{target!r} is not {what} (truncated or unreadable member: {error!r})") from error
