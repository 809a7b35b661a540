"""Training pipelines that use the samplers: vision (SimCLR), text (SimCSE), graph (GraphCL).

Each modality lives in its own subpackage (``integrations.vision``, ``integrations.text``,
``integrations.graph``) with its optional dependencies.
"""
