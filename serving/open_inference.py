"""The Open Inference Protocol (KServe v2) for the ranker: metadata tensors, named inputs, named outputs.

One v2 request is **one** ranking request: each input tensor is a feature
(or ``module_name``), one-dimensional, with one value per candidate (shape
``[N]``) or one value for all of them (shape ``[1]``, broadcast like a v1
context)::

    {"id": "r1",
     "inputs": [{"name": "module_name", "datatype": "BYTES", "shape": [1], "data": ["search"]},
                {"name": "price", "datatype": "FP32", "shape": [2], "data": [12.5, null]}]}

    instance = tensors_to_instance(infer_request, input_datatypes(spec))
    batch = parser.parse_single(instance, INPUTS)      # the v1 rules: names, values, limits
    response = infer_response(infer_request, outputs, output_names, model_name, model_version)

Values follow the v1 rules (docs/serving.md): ``null`` (JSON) or NaN (binary
FP32) is missing, list features take strings joined by ``|``. The tensor's
datatype must be the one the model's metadata lists.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from kserve.constants.constants import INFERENCE_CONTENT_LENGTH_HEADER
from kserve.errors import InferenceError, InvalidInput
from kserve.protocol.infer_type import InferInput, InferOutput, InferRequest, InferResponse

from ranker_core.schema import MODULE, FeatureSpec
from serving.request import ParsedBatch, RequestError

INPUTS = "inputs"
KNOWN_PARAMETERS = ("binary_data_output",)
BYTES, FP32 = "BYTES", "FP32"
SCORE = "score"  # the ranking score's output name (trainer.model.SCORE, named here without importing TensorFlow)


@dataclasses.dataclass
class InferenceBatch:
    """A parsed v2 request: the model columns and the request its response answers."""

    batch: ParsedBatch
    request: InferRequest


def input_datatypes(spec: FeatureSpec) -> dict[str, str]:
    """Input tensor name -> v2 datatype: ``BYTES`` for the module and string features, ``FP32`` for numbers."""
    return {MODULE: BYTES, **{feature.name: BYTES if feature.is_string else FP32 for feature in spec.features}}


def tensor_metadata(datatypes: Mapping[str, str]) -> list[dict[str, Any]]:
    """The metadata of one-dimensional tensors of any length (``shape [-1]``), as ``GET /v2/models/<name>`` lists them.

    >>> tensor_metadata({"score": "FP32"})
    [{'name': 'score', 'datatype': 'FP32', 'shape': [-1]}]
    """
    return [{"name": name, "datatype": datatype, "shape": [-1]} for name, datatype in datatypes.items()]


def tensors_to_instance(request: InferRequest, datatypes: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """The v2 input tensors as one v1 instance: ``[1]`` tensors in the context, ``[N]`` ones in the candidates.

    Checks what v1 has no counterpart for (datatypes, shapes, duplicate
    names, unknown parameters); names and values are the parser's to check.
    """
    check_parameters(request.parameters, request.request_outputs)
    if not request.inputs:
        raise RequestError("the request has no input tensors: send one per feature (see GET /v2/models/<name>)")
    tensors: dict[str, list] = {}
    for tensor in request.inputs:
        if tensor.name in tensors:
            raise RequestError(f"input tensor '{tensor.name}' is given twice")
        tensors[tensor.name] = tensor_values(tensor, datatypes.get(tensor.name))
    rows = max(map(len, tensors.values()))
    for name, values in tensors.items():
        if len(values) not in (1, rows):
            raise RequestError(
                f"input tensor '{name}' has shape [{len(values)}]; the others have {rows} rows: "
                f"send [{rows}] (one value per candidate) or [1] (one value for all)"
            )
    context = {name: values[0] for name, values in tensors.items() if len(values) == 1 and rows > 1}
    candidates = {name: values for name, values in tensors.items() if name not in context}
    return {"context": context, "candidates": candidates}


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
        raise RequestError(f"unknown parameter(s) {sorted(unknown)}: known are {list(KNOWN_PARAMETERS)}")


def tensor_values(tensor: InferInput, datatype: str | None) -> list:
    """The flat values of a one-dimensional input tensor whose datatype is ``datatype`` (any, if ``None``)."""
    name, shape, data = tensor.name, tensor.shape, tensor.data
    if datatype is not None and tensor.datatype != datatype:
        raise RequestError(f"input tensor '{name}' has datatype {tensor.datatype!r}; the model takes {datatype}")
    if not (isinstance(shape, list) and len(shape) == 1 and type(shape[0]) is int):
        raise RequestError(
            f"input tensor '{name}' has shape {shape!r}; inputs are one-dimensional: [N] (per candidate) or [1]"
        )
    if not isinstance(data, list) or len(data) != shape[0]:
        count = len(data) if isinstance(data, list) else type(data).__name__
        raise RequestError(f"input tensor '{name}' has shape {shape} but {count} values")
    if list in set(map(type, data)):
        raise RequestError(f"input tensor '{name}': nested data; send a flat list of {shape[0]} values")
    return data


def infer_response(
    request: InferRequest,
    outputs: Mapping[str, np.ndarray],
    names: Sequence[str],
    model_name: str,
    model_version: str | None,
) -> InferResponse:
    """One FP32 output tensor per name (the tasks' probabilities and the score), the request's id echoed."""
    tensors = []
    for name in names:
        values = np.asarray(outputs[name], dtype=np.float32).reshape(-1)
        tensors.append(InferOutput(name=name, shape=[len(values)], datatype=FP32, data=values))
    return InferResponse(
        response_id=request.id or "",  # the protocol's response always has an id; "" when none was sent
        model_name=model_name,
        model_version=model_version,
        infer_outputs=tensors,
        use_binary_outputs=request.use_binary_outputs,
        requested_outputs=request.request_outputs,
    )


def refuse_malformed_binary_requests(dataplane: Any) -> None:
    """Make KServe's decoding of a v2 body sent as bytes answer 400, never 500, and take a JSON body without a header.

    With the binary tensor extension the body is the JSON header
    (``Inference-Header-Content-Length`` bytes) and then the raw tensors.
    KServe 0.21 raises ``KeyError``, ``ValueError`` or ``InferenceError`` (a
    500) for a header that lacks a field, a size that does not match, or
    BYTES that are not UTF-8. A body without the header (a v2 JSON request
    sent with a non-JSON content type) is read as all JSON.
    """

    original = dataplane.decode_inference_request

    def decode(body: Any, headers: dict[str, str], model_name: str) -> InferRequest:
        if isinstance(body, bytes) and INFERENCE_CONTENT_LENGTH_HEADER not in headers:
            headers = {**headers, INFERENCE_CONTENT_LENGTH_HEADER: str(len(body))}
        try:
            return original(body, headers, model_name)
        except InvalidInput:
            raise
        except (KeyError, TypeError, AttributeError, ValueError, IndexError, struct.error, InferenceError) as error:
            raise InvalidInput(f"malformed v2 request ({type(error).__name__}): {error}") from None

    dataplane.decode_inference_request = decode
