"""batchsampler: hard-negative mini-batch sampling for contrastive learning."""

__version__ = "0.1.0"
