import numpy as np
import pytest

from batchsampler.diagnostics import summarize_epoch


def test_hand_computed_summary():
    embeddings = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 2.0]])
    labels = np.array([0, 0, 1, 0])
    summary = summarize_epoch([[0, 1], [2, 3, 0], [3]], 5, embeddings=np.vstack([embeddings, [[1.0, 1.0]]]), labels=np.append(labels, 2))
    assert summary.num_batches == 3 and summary.num_indices == 6
    assert summary.coverage == pytest.approx(4 / 5)
    assert summary.repeats == 2  # 0 and 3 appear twice
    # Pairs (ordered): batch 1: 2 pairs with cos 1; batch 2: (2,3) cos 1, (2,0) 0, (3,0) 0 -> 2 pairs of 1 of 6.
    assert summary.mean_similarity == pytest.approx((2 + 2) / (2 + 6))
    # Same label: batch 1: 2 of 2; batch 2: labels 1, 0, 0 -> 2 of 6.
    assert summary.same_label_share == pytest.approx((2 + 2) / 8)


def test_without_embeddings_or_labels():
    summary = summarize_epoch([[0, 1, 2]], 3)
    assert summary.mean_similarity is None and summary.same_label_share is None
    assert summary.as_dict()["coverage"] == 1.0


def test_mismatched_rows_raise():
    with pytest.raises(ValueError, match=r"^embeddings\b"):
        summarize_epoch([[0]], 3, embeddings=np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"^labels\b"):
        summarize_epoch([[0]], 3, labels=[1, 2])
