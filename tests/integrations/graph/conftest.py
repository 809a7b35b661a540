from pathlib import Path

import pytest

TU_ROOT = Path(__file__).resolve().parents[4] / "shared" / "data" / "tu"


@pytest.fixture(scope="session")
def tu_root():
    if not (TU_ROOT / "MUTAG" / "raw").is_dir():
        pytest.skip(f"shared TU data not found at {TU_ROOT}")
    return TU_ROOT


@pytest.fixture(scope="session")
def mutag(tu_root, tmp_path_factory):
    from batchsampler.integrations.graph import load_tu_dataset

    return load_tu_dataset("MUTAG", tu_root, cache_dir=tmp_path_factory.mktemp("tu-cache"))
