"""Training pipelines that use the samplers: vision (SimCLR), text (SimCSE), graph (GraphCL).

Installed as ``batchsampler.integrations`` (the repository keeps the sources in its top-level
``integrations/`` folder; ``pyproject.toml`` maps it). Each modality lives in its own
subpackage (``batchsampler.integrations.vision``, ``.text``, ``.graph``) with its optional
dependencies: ``pip install "batchsampler[graph]"``, ``"batchsampler[text]"``, ``"batchsampler[vision]"``.
The subpackages import their modules, and so those dependencies, only when a name is first
used, so ``batchsampler reproduce MODALITY --help`` works without them.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

__all__ = ["EXTRAS", "MissingExtraError", "cache_dir", "extra_for", "require_extra"]

EXTRAS: dict[str, tuple[str, ...]] = {
    "graph": ("torch_geometric",),
    "text": ("sentence_transformers", "transformers"),
    "vision": ("PIL",),
}
"""Extra of ``pyproject.toml`` -> the top-level modules it installs that the integrations import."""


class MissingExtraError(ModuleNotFoundError):
    """A module of an optional extra is not installed; the message says what to install.

    Attributes:
        extra: the extra's name (``"graph"``, ``"text"``, ``"vision"``).
    """

    def __init__(self, extra: str, module: str, purpose: str | None = None) -> None:
        self.extra = extra
        purpose = purpose or f"batchsampler.integrations.{extra}"
        super().__init__(
            f"{purpose} needs the {module!r} module, which is not installed: "
            f'pip install "batchsampler[{extra}]"',
            name=module,
        )


def extra_for(error: ModuleNotFoundError) -> str | None:
    """The extra whose module ``error`` failed to find, or ``None`` if it is none of theirs."""
    if isinstance(error, MissingExtraError):
        return error.extra
    top = (error.name or "").partition(".")[0]
    return next((extra for extra, modules in EXTRAS.items() if top in modules), None)


def require_extra(extra: str, purpose: str | None = None, modules: tuple[str, ...] | None = None) -> None:
    """Import the modules of ``extra`` (default: all of :data:`EXTRAS` ``[extra]``).

    Raises:
        MissingExtraError: if one of them is not installed (a module that is installed but
            fails to import raises its own error).
    """
    for module in modules if modules is not None else EXTRAS[extra]:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            if (error.name or "").partition(".")[0] != module.partition(".")[0]:
                raise
            raise MissingExtraError(extra, module, purpose) from None


def cache_dir(*parts: str) -> Path:
    """A per-user cache directory ``<base>/batchsampler/<parts...>``, created with mode 0o700.

    ``<base>/batchsampler`` is ``$BATCHSAMPLER_CACHE`` if set, else
    ``$XDG_CACHE_HOME/batchsampler``, else ``~/.cache/batchsampler`` (on Windows
    ``%LOCALAPPDATA%\\batchsampler``). Directories that already exist keep their mode, but the
    base must belong to the current user where the platform can tell (no shared ``/tmp`` path
    another user could have prepared).

    Raises:
        PermissionError: if the base directory belongs to another user.
    """
    explicit = os.environ.get("BATCHSAMPLER_CACHE")
    if explicit:
        base = Path(explicit).expanduser()
    else:
        root = os.environ.get("XDG_CACHE_HOME") or (os.environ.get("LOCALAPPDATA") if os.name == "nt" else None)
        base = (Path(root).expanduser() if root else Path.home() / ".cache") / "batchsampler"
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    if hasattr(os, "getuid") and base.stat().st_uid != os.getuid():
        raise PermissionError(f"cache directory {str(base)!r} belongs to another user; set BATCHSAMPLER_CACHE")
    path = base.joinpath(*parts)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def _lazy_exports(package: str, exports: dict[str, str]):
    """Module ``__getattr__`` and ``__dir__`` for ``package`` that import ``exports`` (name ->
    submodule) on first use, so importing the package needs none of the extra's modules."""

    def __getattr__(name: str):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        setattr(importlib.import_module(package), name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(importlib.import_module(package))) | set(exports))

    return __getattr__, __dir__
