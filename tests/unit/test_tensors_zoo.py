from __future__ import annotations

import numpy as np
import pytest

from smiless import tensors, zoo
from smiless.v1 import common_pb2


@pytest.mark.parametrize("dtype", ["float32", "float16", "int64", "int32", "uint8", "bool"])
def test_round_trip(dtype: str) -> None:
    x = (np.arange(24).reshape(2, 3, 4) % 2).astype(dtype)
    t = tensors.to_proto(x)
    assert list(t.shape) == [2, 3, 4]
    assert len(t.data) == x.nbytes
    np.testing.assert_array_equal(tensors.from_proto(t), x)


def test_wire_format_is_little_endian_row_major() -> None:
    t = tensors.to_proto(np.array([[1, 2]], dtype=np.int32))
    assert t.data == b"\x01\x00\x00\x00\x02\x00\x00\x00"


@pytest.mark.parametrize(
    ("tensor", "message"),
    [
        (common_pb2.Tensor(dtype=common_pb2.DATA_TYPE_UNSPECIFIED, shape=[1], data=b"\0" * 4), "unspecified"),
        (common_pb2.Tensor(dtype=common_pb2.DATA_TYPE_FLOAT32, shape=[2], data=b"\0" * 4), "needs 8"),
        (common_pb2.Tensor(dtype=common_pb2.DATA_TYPE_FLOAT32, shape=[-1], data=b""), "negative"),
    ],
)
def test_malformed_tensors(tensor: common_pb2.Tensor, message: str) -> None:
    with pytest.raises(tensors.TensorError, match=message):
        tensors.from_proto(tensor)


def test_unsupported_dtype() -> None:
    with pytest.raises(tensors.TensorError):
        tensors.to_proto(np.zeros(2, dtype=np.complex64))


@pytest.mark.parametrize("name", sorted(zoo.MODELS))
def test_example_inputs_fit_their_contract(name: str) -> None:
    spec = zoo.MODELS[name]
    x = spec.example_input(seed=3)
    assert spec.input.check(x) is None
    np.testing.assert_array_equal(x, spec.example_input(seed=3))


def test_spec_check_reports_mismatches() -> None:
    spec = zoo.MODELS["translation"].input  # int64[N<=64]
    assert "dtype" in (spec.check(np.zeros(3, dtype=np.float32)) or "")
    assert "1..64" in (spec.check(np.zeros(65, dtype=np.int64)) or "")
    assert "shape" in (spec.check(np.zeros((2, 2), dtype=np.int64)) or "")


def test_check_edge() -> None:
    m = zoo.MODELS
    assert zoo.check_edge([m["topicmodeling"], m["nameentityrecognition"]], m["textgeneration"]) is None
    assert zoo.check_edge([m["speechrecognition"]], m["objectdetection"]) is not None
    # two parents into a fixed-shape input cannot join
    assert "cannot join" in (zoo.check_edge([m["tiny-mlp"], m["tiny-mlp"]], m["tiny-mlp"]) or "")
    # parents that can send more rows than the child takes
    assert "at most" in (zoo.check_edge([m["textgeneration"]] * 5, m["translation"]) or "")
