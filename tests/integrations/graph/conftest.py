import os
from pathlib import Path

import pytest

TU_ROOT = Path(__file__).resolve().parents[4] / "shared" / "data" / "tu"


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Runs that use the default cache write to a temporary one, not the user's."""
    previous = os.environ.get("BATCHSAMPLER_CACHE")
    os.environ["BATCHSAMPLER_CACHE"] = str(tmp_path_factory.mktemp("batchsampler-cache"))
    yield
    if previous is None:
        os.environ.pop("BATCHSAMPLER_CACHE", None)
    else:
        os.environ["BATCHSAMPLER_CACHE"] = previous


@pytest.fixture(scope="session")
def tu_root():
    if not (TU_ROOT / "MUTAG" / "raw").is_dir():
        pytest.skip(f"shared TU data not found at {TU_ROOT}")
    return TU_ROOT


@pytest.fixture(scope="session")
def mutag(tu_root, tmp_path_factory):
    from batchsampler.integrations.graph import load_tu_dataset

    return load_tu_dataset("MUTAG", tu_root, cache_dir=tmp_path_factory.mktemp("tu-cache"))
