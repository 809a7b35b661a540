"""Training pipelines that use the samplers: vision (SimCLR), text (SimCSE), graph (GraphCL).

Installed as ``batchsampler.integrations`` (the repository keeps the sources in its top-level
``integrations/`` folder; ``pyproject.toml`` maps it). Each modality lives in its own
subpackage (``batchsampler.integrations.vision``, ``.text``, ``.graph``) with its optional
dependencies: ``pip install "batchsampler[graph]"``, ``"batchsampler[text]"``, ``"batchsampler[vision]"``.
"""
