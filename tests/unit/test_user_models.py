"""User models: a TorchScript file named `torchscript:/abs/path.pt` carries its contract;
the zoo reads it without torch, the app-spec validator and the worker's loader refuse
unusable files with a message that names the problem."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from smiless import appspec, zoo
from smiless.worker import models
from tests.torchscript_models import VEC, Affine, WrongShape, save


def test_contract_is_read_from_the_archive(tmp_path: Path) -> None:
    name = save(Affine(), tmp_path / "affine.pt", max_batch=5)
    assert name == f"torchscript:{tmp_path / 'affine.pt'}"
    spec = zoo.MODELS[name]
    assert (spec.input, spec.output, spec.max_batch) == (VEC, VEC, 5)
    assert zoo.get(name) is spec, "cached while the file is unchanged"
    assert name not in list(zoo.MODELS), "iteration lists the built-in zoo only"


def test_built_model_runs_the_module_on_the_batch(tmp_path: Path) -> None:
    name = save(Affine(), tmp_path / "affine.pt")
    net = models.build(name)
    batch = [zoo.MODELS[name].example_input(seed=i) for i in range(3)]
    with torch.inference_mode():
        out = net.run(batch)
    for x, y in zip(batch, out, strict=True):
        np.testing.assert_allclose(y, 2 * x + 1, rtol=1e-6)


def test_a_module_that_breaks_its_contract_is_caught(tmp_path: Path) -> None:
    net = models.build(save(WrongShape(), tmp_path / "wrong.pt"))
    with pytest.raises(zoo.ZooError, match=r"returned shape \[1, 4\] for a batch of 2"):
        net.run([np.zeros(4, np.float32)] * 2)


def _zip(path: Path, entries: dict[str, str]) -> str:
    with zipfile.ZipFile(path, "w") as z:
        for k, v in entries.items():
            z.writestr(k, v)
    return f"torchscript:{path}"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: "torchscript:relative/model.pt", "must be absolute"),
        (lambda d: f"torchscript:{d}/missing.pt", "cannot read TorchScript file .*No such file"),
        (lambda d: f"torchscript:{d}", "cannot read TorchScript file .*directory"),
        (lambda d: (d / "text.pt").write_text("hello") and f"torchscript:{d}/text.pt", "not a zip file"),
        (lambda d: _zip(d / "plain.zip", {"a/readme": "x"}), "is not a TorchScript archive"),
        (lambda d: _zip(d / "nocontract.pt", {"m/data.pkl": ""}), "has no smiless.json contract"),
        (
            lambda d: _zip(d / "badjson.pt", {"m/data.pkl": "", "m/extra/smiless.json": "{"}),
            "not valid JSON",
        ),
        (
            lambda d: _zip(
                d / "variable.pt",
                {
                    "m/data.pkl": "",
                    "m/extra/smiless.json": json.dumps(
                        {
                            "input": {"dtype": "float32", "shape": [-1, 4]},
                            "output": {"dtype": "float32", "shape": [4]},
                        }
                    ),
                },
            ),
            r"input.shape \[-1, 4\] must be positive",
        ),
        (
            lambda d: _zip(
                d / "dtype.pt",
                {
                    "m/data.pkl": "",
                    "m/extra/smiless.json": json.dumps(
                        {
                            "input": {"dtype": "complex64", "shape": [4]},
                            "output": {"dtype": "float32", "shape": [4]},
                        }
                    ),
                },
            ),
            "input.dtype 'complex64' is not one of",
        ),
    ],
)
def test_unusable_files_are_refused_with_the_reason(tmp_path: Path, make, message: str) -> None:  # type: ignore[no-untyped-def]
    name = make(tmp_path)
    with pytest.raises(zoo.ZooError, match=message):
        zoo.resolve(name)
    assert zoo.get(name) is None
    spec = appspec.AppSpec("user", 1.0, (appspec.FunctionSpec("f", name),))
    with pytest.raises(appspec.AppSpecError, match=message) as info:
        appspec.validate(spec)
    assert info.value.field == "functions[0].model"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_unreadable_file_is_refused(tmp_path: Path) -> None:
    name = save(Affine(), tmp_path / "secret.pt")
    os.chmod(tmp_path / "secret.pt", 0)
    with pytest.raises(zoo.ZooError, match="Permission denied"):
        zoo.resolve(name)


def test_app_with_a_user_model_validates_and_chains(tmp_path: Path) -> None:
    name = save(Affine(), tmp_path / "affine.pt")
    spec = appspec.validate(
        appspec.from_dict(
            {
                "name": "chain",
                "sla": "1s",
                "functions": [{"name": "a", "model": name}, {"name": "b", "model": name}],
                "edges": [["a", "b"]],
            }
        )
    )
    assert spec.topological_order() == ["a", "b"]
    # its output cannot feed a zoo model that takes tokens
    bad = appspec.from_dict(
        {
            "name": "bad",
            "sla": "1s",
            "functions": [{"name": "a", "model": name}, {"name": "t", "model": "translation"}],
            "edges": [["a", "t"]],
        }
    )
    with pytest.raises(appspec.AppSpecError, match="functions\\[1\\]"):
        appspec.validate(bad)


def test_torch_cannot_load_a_fake_archive(tmp_path: Path) -> None:
    """A zip that passes the contract check but is no TorchScript: the loader says so."""
    name = _zip(
        tmp_path / "fake.pt",
        {"m/data.pkl": "junk", "m/extra/smiless.json": zoo.contract_json(VEC, VEC)},
    )
    assert zoo.resolve(name).input == VEC
    with pytest.raises(zoo.ZooError, match="cannot load TorchScript"):
        models.build(name)
