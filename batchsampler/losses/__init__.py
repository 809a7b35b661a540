"""Contrastive losses that pair with the sampler (work in progress)."""
