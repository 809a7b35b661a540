import numpy as np
import pytest


@pytest.fixture
def clustered():
    """Embeddings [240, 16] in 6 well-separated clusters of 40, and their labels."""
    rng = np.random.default_rng(1234)
    centers = rng.standard_normal((6, 16)) * 4
    labels = np.repeat(np.arange(6), 40)
    embeddings = (centers[labels] + rng.standard_normal((240, 16))).astype(np.float32)
    return embeddings, labels
