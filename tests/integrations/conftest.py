"""Fixtures shared by the integration tests."""

import inspect

import pytest


class TrainingRecorder:
    """Patches the training module's model and ``SAMPLERS`` entry to record, per step, the
    features and projections of both views, the sampler's constructor keywords and the rows
    fed to ``sampler.update``."""

    def __init__(self, monkeypatch, module, model_name, sampler):
        import batchsampler

        self.outputs, self.updates, self.kwargs = [], [], {}
        recorder, base, model = self, batchsampler.SAMPLERS[sampler], getattr(module, model_name)

        class Recording(base):
            def __init__(self, *args, **kwargs):
                recorder.kwargs = dict(kwargs)
                if "target_hardness" not in inspect.signature(base).parameters:
                    kwargs.pop("target_hardness", None)  # recorded; base does not take it (yet)
                super().__init__(*args, **kwargs)

            def update(self, indices, embeddings):
                recorder.updates.append((indices.clone(), embeddings.detach().clone()))
                super().update(indices, embeddings)

        class RecordingModel(model):
            def encode_and_project(self, inputs):
                features, projections = super().encode_and_project(inputs)
                recorder.outputs.append((features.detach().clone(), projections.detach().clone()))
                return features, projections

        monkeypatch.setitem(batchsampler.SAMPLERS, sampler, Recording)
        monkeypatch.setattr(module, model_name, RecordingModel)

    def steps(self):
        """``(indices, bank rows, (h1, h2), (z1, z2))`` per step."""
        pairs = zip(self.outputs[0::2], self.outputs[1::2])
        return [(i, rows, (a[0], b[0]), (a[1], b[1])) for (i, rows), (a, b) in zip(self.updates, pairs)]


@pytest.fixture
def record_training(monkeypatch):
    """``record_training(module, model_name, sampler)``: a :class:`TrainingRecorder` patched
    into the training ``module`` (undone after the test)."""
    return lambda module, model_name, sampler: TrainingRecorder(monkeypatch, module, model_name, sampler)
