"""The Open Inference Protocol (KServe v2) for the ranker: decoding requests, metadata tensors, encoding responses.

One v2 request is **one** ranking request: each input tensor is a feature
(or ``module_name``), one-dimensional, with one value per candidate (shape
``[N]``) or one value for all of them (shape ``[1]``, broadcast like a v1
context)::

    {"id": "r1",
     "inputs": [{"name": "module_name", "datatype": "BYTES", "shape": [1], "data": ["search"]},
                {"name": "price", "datatype": "FP32", "shape": [2], "data": [12.5, null]}]}

    request = decode_request(body, headers.get("inference-header-content-length"))
    instance = tensors_to_instance(request, input_datatypes(spec))
    batch = parser.parse_single(instance, INPUTS)      # the v1 rules: names, values, limits
    plan = output_plan(request, output_names)          # which outputs, each as JSON or binary
    body, response_headers = encode_response(request.id, outputs, plan, model_name, model_version)

The server decodes and encodes itself (orjson; binary FP32 tensors with
``np.frombuffer``) rather than through KServe's ``InferRequest`` and
``InferResponse``, which convert every value to and from Python one by one;
the wire format is the same, so KServe's client works unchanged.

Values follow the v1 rules (docs/serving.md): ``null`` (JSON) or NaN (binary
FP32) is missing, list features take strings joined by ``|``. The tensor's
datatype must be the one the model's metadata lists. Errors are
:class:`RequestError` (a 400), :class:`SchemaError` for a body that is not a
v2 request (a 422, as KServe's schema check answered).
"""

from __future__ import annotations

import dataclasses
import math
import struct
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import orjson

from ranker_core.schema import MODULE, FeatureSpec
from serving.request import RequestError, names_of

INPUTS = "inputs"
KNOWN_PARAMETERS = ("binary_data_output",)
BYTES, FP32 = "BYTES", "FP32"
SCORE = "score"  # the ranking score's output name (trainer.model.SCORE, named here without importing TensorFlow)
HEADER_LENGTH = "inference-header-content-length"  # the binary extension's header (KServe's constant, lower case)
ELEMENT_LENGTH = struct.Struct("<I")  # a BYTES element's length prefix in binary tensor data


class SchemaError(RequestError):
    """A body that is not a v2 inference request (a field missing or of the wrong type): a 422."""


class Tensor(Protocol):
    """An input tensor: :class:`InputTensor`, or KServe's ``InferInput`` (what its client builds)."""

    name: str
    datatype: str
    shape: Any
    data: Any


class TensorRequest(Protocol):
    """A v2 request: :class:`DecodedRequest`, or KServe's ``InferRequest``."""

    inputs: Sequence[Any]
    parameters: Any
    request_outputs: Sequence[Any] | None


@dataclasses.dataclass
class InputTensor:
    """One input tensor: ``data`` a list (JSON), a float32 array (binary FP32) or a list of str (binary BYTES)."""

    name: str
    datatype: str
    shape: list[int]
    data: Any


@dataclasses.dataclass
class RequestedOutput:
    """An entry of the request's ``outputs``: a name, and ``binary_data`` among its parameters."""

    name: str
    parameters: dict[str, Any] | None = None


@dataclasses.dataclass
class DecodedRequest:
    """A decoded v2 request."""

    inputs: list[InputTensor]
    id: str | None = None
    parameters: dict[str, Any] | None = None
    request_outputs: list[RequestedOutput] | None = None


# -- decoding --------------------------------------------------------------------------------------------------


def decode_request(body: bytes, header_length: str | None) -> DecodedRequest:
    """A v2 body: all JSON, or (with ``Inference-Header-Content-Length``) a JSON header and raw tensors after it.

    >>> decode_request(b'{"inputs": [{"name": "price", "datatype": "FP32", "shape": [1], "data": [2.5]}]}', None).inputs
    [InputTensor(name='price', datatype='FP32', shape=[1], data=[2.5])]
    """
    end = json_end(header_length, len(body))
    try:
        header = orjson.loads(memoryview(body)[:end])
    except orjson.JSONDecodeError as error:
        raise RequestError(f"the request's JSON is not valid: {error}") from None
    if not isinstance(header, dict):
        raise SchemaError(f"a v2 request is a JSON object with 'inputs', got {type(header).__name__}")
    raw = BinaryData(body, end)
    inputs = [read_input(entry, f"inputs[{i}]", raw) for i, entry in enumerate(field(header, "inputs", list, ""))]
    raw.check_consumed()
    outputs = field(header, "outputs", list, "", required=False)
    return DecodedRequest(
        inputs=inputs,
        id=field(header, "id", str, "", required=False),
        parameters=field(header, "parameters", dict, "", required=False),
        request_outputs=None if outputs is None else [read_output(o, f"outputs[{i}]") for i, o in enumerate(outputs)],
    )


def json_end(header_length: str | None, size: int) -> int:
    """Where the JSON part of a ``size``-byte body ends: ``Inference-Header-Content-Length``, or all of it."""
    if header_length is None:
        return size
    try:
        length = int(header_length)
    except ValueError:
        raise RequestError(f"{HEADER_LENGTH} must be an integer, got {header_length!r}") from None
    if not 0 <= length <= size:
        raise RequestError(f"{HEADER_LENGTH} is {length} but the body has {size} bytes")
    return length


KINDS = {list: "a list", dict: "an object", str: "a string"}


def field(entry: Mapping[str, Any], key: str, kind: type, where: str, required: bool = True) -> Any:
    """``entry[key]`` checked to be a ``kind`` (``None`` when absent or null and not ``required``)."""
    value = entry.get(key)
    name = f"{where}.{key}" if where else key
    if value is None:
        if required:
            raise SchemaError(f"{name} is required (a v2 request: see docs/serving.md)")
        return None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise SchemaError(f"{name} must be {KINDS[kind]}, got {type(value).__name__} {value!r:.40}")
    return value


def read_input(entry: Any, where: str, raw: BinaryData) -> InputTensor:
    """One entry of ``inputs``: its values from ``data``, or from the raw bytes ``parameters.binary_data_size`` says."""
    if not isinstance(entry, dict):
        raise SchemaError(f"{where} must be an object (a tensor), got {type(entry).__name__}")
    name, datatype = field(entry, "name", str, where), field(entry, "datatype", str, where)
    shape = field(entry, "shape", list, where)
    if not all(type(size) is int for size in shape):
        raise SchemaError(f"{where}.shape must be a list of integers, got {shape!r:.60}")
    size = (field(entry, "parameters", dict, where, required=False) or {}).get("binary_data_size")
    if size is None:
        if "data" not in entry:
            raise SchemaError(f"{where}.data is required (or parameters.binary_data_size, with binary tensor data)")
        return InputTensor(name, datatype, shape, entry["data"])
    if "data" in entry:
        raise RequestError(f"input tensor '{name}' has both data and parameters.binary_data_size: send one")
    if type(size) is not int or size < 0:
        raise RequestError(f"input tensor '{name}': parameters.binary_data_size must be a byte count, got {size!r}")
    return InputTensor(name, datatype, shape, binary_values(name, datatype, math.prod(shape), raw.take(size, name)))


def read_output(entry: Any, where: str) -> RequestedOutput:
    if not isinstance(entry, dict):
        raise SchemaError(f"{where} must be an object with a name, got {type(entry).__name__}")
    return RequestedOutput(field(entry, "name", str, where), entry.get("parameters"))


class BinaryData:
    """The raw tensors after a body's JSON header, taken in the order of ``inputs``."""

    def __init__(self, body: bytes, start: int) -> None:
        self.body, self.position = body, start

    def take(self, size: int, name: str) -> bytes:
        end = self.position + size
        if end > len(self.body):
            raise RequestError(
                f"input tensor '{name}': binary_data_size {size} but only {len(self.body) - self.position} bytes left"
            )
        chunk, self.position = self.body[self.position : end], end
        return chunk

    def check_consumed(self) -> None:
        left = len(self.body) - self.position
        if left:
            raise RequestError(f"{left} bytes after the last tensor: the binary_data_size values do not add up")


def binary_values(name: str, datatype: str, count: int, chunk: bytes) -> np.ndarray | list[str]:
    """The ``count`` values of a binary tensor: little-endian FP32 as a float32 array, BYTES as UTF-8 strings."""
    if datatype == FP32:
        if len(chunk) != 4 * count:
            raise RequestError(f"input tensor '{name}': {len(chunk)} bytes of FP32 data for {count} values")
        return np.frombuffer(chunk, dtype="<f4")
    if datatype != BYTES:
        raise RequestError(
            f"input tensor '{name}' has datatype {datatype!r} in binary data; the model's inputs are FP32 and BYTES"
        )
    values = bytes_elements(name, chunk)
    if len(values) != count:
        raise RequestError(f"input tensor '{name}': {len(values)} BYTES elements for {count} values")
    return values


def bytes_elements(name: str, chunk: bytes) -> list[str]:
    """BYTES tensor data: each element's 4-byte little-endian length, then its UTF-8 bytes.

    >>> bytes_elements("tags", b"\\x03\\x00\\x00\\x00abc\\x00\\x00\\x00\\x00")
    ['abc', '']
    """
    values: list[str] = []
    position, end, unpack = 0, len(chunk), ELEMENT_LENGTH.unpack_from
    try:
        while position < end:
            (length,) = unpack(chunk, position)
            position += 4 + length
            if position > end:
                raise RequestError(f"input tensor '{name}': element {len(values)} runs past the tensor's data")
            values.append(chunk[position - length : position].decode())
    except struct.error:
        raise RequestError(f"input tensor '{name}': element {len(values)} has no 4-byte length") from None
    except UnicodeDecodeError as error:
        raise RequestError(f"input tensor '{name}': element {len(values)} is not UTF-8 ({error.reason})") from None
    return values


# -- tensors to a ranking instance -----------------------------------------------------------------------------


def input_datatypes(spec: FeatureSpec) -> dict[str, str]:
    """Input tensor name -> v2 datatype: ``BYTES`` for the module and string features, ``FP32`` for numbers."""
    return {MODULE: BYTES, **{feature.name: BYTES if feature.is_string else FP32 for feature in spec.features}}


def tensor_metadata(datatypes: Mapping[str, str]) -> list[dict[str, Any]]:
    """The metadata of one-dimensional tensors of any length (``shape [-1]``), as ``GET /v2/models/<name>`` lists them.

    >>> tensor_metadata({"score": "FP32"})
    [{'name': 'score', 'datatype': 'FP32', 'shape': [-1]}]
    """
    return [{"name": name, "datatype": datatype, "shape": [-1]} for name, datatype in datatypes.items()]


def tensors_to_instance(request: TensorRequest, datatypes: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """The v2 input tensors as one v1 instance: ``[1]`` tensors in the context, ``[N]`` ones in the candidates.

    Checks what v1 has no counterpart for (datatypes, shapes, duplicate
    names, unknown parameters); names and values are the parser's to check.
    """
    check_parameters(request.parameters, request.request_outputs)
    if not request.inputs:
        raise RequestError("the request has no input tensors: send one per feature (see GET /v2/models/<name>)")
    tensors: dict[str, Any] = {}
    for tensor in request.inputs:
        if tensor.name in tensors:
            raise RequestError(f"input tensor '{tensor.name}' is given twice")
        tensors[tensor.name] = tensor_values(tensor, datatypes.get(tensor.name))
    rows = max(map(len, tensors.values()))
    for name, values in tensors.items():
        if len(values) not in (1, rows):
            advice = f"send [{rows}] (one value per candidate) or [1] (one value for all)" if rows > 1 else "send [1]"
            raise RequestError(
                f"input tensor '{name}' has shape [{len(values)}]; the others have {rows} rows: {advice}"
            )
    context = {name: first(values) for name, values in tensors.items() if len(values) == 1 and rows > 1}
    candidates = {name: values for name, values in tensors.items() if name not in context}
    return {"context": context, "candidates": candidates}


def json_columns(instance: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``instance`` with every candidate column a list, as the feature store takes them (binary FP32 as floats).

    >>> json_columns({"context": {}, "candidates": {"price": np.array([1.5], dtype=np.float32)}})
    {'context': {}, 'candidates': {'price': [1.5]}}
    """
    candidates = instance["candidates"]
    return {**instance, "candidates": {key: as_python(values) for key, values in candidates.items()}}


def first(values: list | np.ndarray) -> Any:
    """The first value, as Python (a binary FP32 tensor's ``np.float32`` as a float, as JSON would give it)."""
    return as_python(values[:1])[0]


def as_python(values: list | np.ndarray) -> list:
    """A tensor's values as a list of Python values (an array's via ``tolist``, in C)."""
    return values.tolist() if isinstance(values, np.ndarray) else values


def check_parameters(parameters: Any, outputs: Sequence[Any] | None) -> None:
    """Request parameters known, and every parameters field an object (a binary body skips KServe's schema check)."""
    fields = [
        ("parameters", parameters),
        *((f"outputs[{i}].parameters", o.parameters) for i, o in enumerate(outputs or [])),
    ]
    for where, value in fields:
        if value is not None and not isinstance(value, Mapping):
            raise RequestError(f"{where} must be an object, got {type(value).__name__}")
    unknown = set(parameters or {}) - set(KNOWN_PARAMETERS)
    if unknown:
        raise RequestError(f"unknown parameter(s) {names_of(unknown)}: known are {list(KNOWN_PARAMETERS)}")


def tensor_values(tensor: Tensor, datatype: str | None) -> list | np.ndarray:
    """The flat values of a one-dimensional input tensor whose datatype is ``datatype`` (any, if ``None``)."""
    name, shape, data = tensor.name, tensor.shape, tensor.data
    if datatype is not None and tensor.datatype != datatype:
        raise RequestError(f"input tensor '{name}' has datatype {tensor.datatype!r}; the model takes {datatype}")
    if not (isinstance(shape, list) and len(shape) == 1 and type(shape[0]) is int):
        raise RequestError(
            f"input tensor '{name}' has shape {shape!r}; inputs are one-dimensional: [N] (per candidate) or [1]"
        )
    if not isinstance(data, list | np.ndarray) or len(data) != shape[0]:
        count = len(data) if isinstance(data, list | np.ndarray) else type(data).__name__
        raise RequestError(f"input tensor '{name}' has shape {shape} but {count} values")
    # Nested strings could pass as a list feature's tokens; nested numbers the parser refuses, naming the index.
    if tensor.datatype == BYTES and isinstance(data, list) and list in set(map(type, data)):
        raise RequestError(f"input tensor '{name}': nested data; send a flat list of {shape[0]} values")
    return data


# -- the response ----------------------------------------------------------------------------------------------


def output_plan(request: TensorRequest, names: Sequence[str]) -> list[tuple[str, bool]]:
    """The outputs to answer, each with whether it goes as binary data: all of ``names`` unless some are asked for.

    ``parameters.binary_data_output`` sets the default, an output's own
    ``parameters.binary_data`` overrides it (the protocol's binary extension).
    """
    default = flag(request.parameters, "binary_data_output", "parameters") is True
    if not request.request_outputs:
        return [(name, default) for name in names]
    plan = []
    for index, output in enumerate(request.request_outputs):
        if output.name not in names:
            raise RequestError(f"outputs[{index}]: unknown output '{output.name}'; the model has {list(names)}")
        binary = flag(output.parameters, "binary_data", f"outputs[{index}].parameters")
        plan.append((output.name, default if binary is None else binary))
    return plan


def flag(parameters: Mapping[str, Any] | None, key: str, where: str) -> bool | None:
    value = (parameters or {}).get(key)
    if value is not None and type(value) is not bool:
        raise RequestError(f"{where}.{key} must be true or false, got {value!r:.40}")
    return value


def encode_response(
    request_id: str | None,
    outputs: Mapping[str, np.ndarray],
    plan: Sequence[tuple[str, bool]],
    model_name: str,
    model_version: str | None,
) -> tuple[bytes, dict[str, str]]:
    """The response body and its headers: one FP32 tensor per planned output, in JSON or as raw little-endian data.

    With any binary output the body is the JSON header then the raw tensors, and
    ``Inference-Header-Content-Length`` gives the header's length.
    """
    tensors, raw = [], []
    for name, binary in plan:
        values = np.ascontiguousarray(outputs[name], dtype="<f4").reshape(-1)
        tensor: dict[str, Any] = {"name": name, "shape": [len(values)], "datatype": FP32}
        if binary:
            tensor["parameters"] = {"binary_data_size": values.nbytes}
            raw.append(values.tobytes())
        else:
            tensor["data"] = values
        tensors.append(tensor)
    response = {"id": request_id or "", "model_name": model_name, "model_version": model_version, "outputs": tensors}
    header = orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)
    if not raw:
        return header, {"content-type": "application/json"}
    headers = {"content-type": "application/octet-stream", HEADER_LENGTH: str(len(header))}
    return b"".join([header, *raw]), headers
