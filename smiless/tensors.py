"""The tensor wire format: `smiless.v1.Tensor` <-> numpy.

A Tensor carries `dtype`, `shape` and `data`: the elements in row-major (C) order,
little-endian, no padding, so len(data) == prod(shape) * itemsize.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from smiless.v1 import common_pb2

_TO_NUMPY: dict[common_pb2.DataType.ValueType, np.dtype[np.generic]] = {
    common_pb2.DATA_TYPE_FLOAT32: np.dtype("<f4"),
    common_pb2.DATA_TYPE_FLOAT16: np.dtype("<f2"),
    common_pb2.DATA_TYPE_INT64: np.dtype("<i8"),
    common_pb2.DATA_TYPE_INT32: np.dtype("<i4"),
    common_pb2.DATA_TYPE_UINT8: np.dtype("u1"),
    common_pb2.DATA_TYPE_BOOL: np.dtype("?"),
}
_FROM_NUMPY: dict[str, common_pb2.DataType.ValueType] = {dt.name: code for code, dt in _TO_NUMPY.items()}
# The per-call fast paths (a tensor is encoded and decoded at every stage): the code by dtype
# object, and each wire dtype in native byte order.
_CODE_OF: dict[np.dtype[np.generic], common_pb2.DataType.ValueType] = {
    dt: code for code, dt in _TO_NUMPY.items()
}
_NATIVE: dict[common_pb2.DataType.ValueType, np.dtype[np.generic]] = {
    code: dt.newbyteorder("=") for code, dt in _TO_NUMPY.items()
}


class TensorError(ValueError):
    pass


def dtype_code(name: str) -> common_pb2.DataType.ValueType:
    try:
        return _FROM_NUMPY[np.dtype(name).name]
    except (KeyError, TypeError) as exc:
        raise TensorError(f"unsupported dtype {name!r}") from exc


def data_bytes(tensors: Iterable[common_pb2.Tensor]) -> int:
    """Payload bytes of wire tensors: what a worker's inline choice and a stream message's
    size bound go by."""
    return sum(len(t.data) for t in tensors)


def to_proto(array: np.ndarray) -> common_pb2.Tensor:
    code = _CODE_OF.get(array.dtype)
    if code is None:
        code = dtype_code(array.dtype.name)
    data = np.ascontiguousarray(array, dtype=_TO_NUMPY[code]).tobytes()
    return common_pb2.Tensor(dtype=code, shape=list(array.shape), data=data)


def from_proto(tensor: common_pb2.Tensor) -> np.ndarray:
    """Decode a Tensor; raise TensorError naming what is wrong."""
    dt = _TO_NUMPY.get(tensor.dtype)
    if dt is None:
        raise TensorError(f"dtype {tensor.dtype} is unspecified or unknown")
    shape = tuple(tensor.shape)
    if any(d < 0 for d in shape):
        raise TensorError(f"shape {list(shape)} has a negative dimension")
    expected = math.prod(shape) * dt.itemsize
    if len(tensor.data) != expected:
        raise TensorError(f"data has {len(tensor.data)} bytes, shape {list(shape)} needs {expected}")
    array = np.frombuffer(tensor.data, dtype=dt).reshape(shape)
    return array.astype(_NATIVE[tensor.dtype], copy=False)
