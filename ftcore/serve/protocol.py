"""text-embeddings-inference's ``/predict`` request and response shapes, and its error body and codes.

Requests (JSON, UTF-8)::

    {"inputs": "text"}                          one text
    {"inputs": ["question", "passage"]}         one sentence pair (["text"] is one text)
    {"inputs": [["a"], ["b"], ["q", "p"]]}      a batch of texts and pairs
    "truncate": false                           (default) refuse a text longer than the run's max length
    "raw_scores": false                         (default) probabilities; true: logits

Answers: per text, ``[{"score", "label"}, ...]`` sorted by score, highest first; a batch answers a list
of those. Errors are ``{"error": message, "error_type": kind}`` with TEI's kinds and status codes
(:data:`ERROR_STATUS`); what TEI leaves to its HTTP framework (malformed JSON, a wrong type, an unknown
route or method) gets the framework's plain status with the same body shape (:data:`FRAMEWORK_STATUS`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

ERROR_STATUS = {
    "empty": 400,
    "validation": 413,
    "tokenizer": 422,
    "backend": 424,
    "overloaded": 429,
    "unhealthy": 503,
}
FRAMEWORK_STATUS = {
    "bad_request": 400,
    "not_found": 404,
    "method_not_allowed": 405,
    "length_required": 411,
}

SHAPES = "a string, a pair of strings [string, string] or a batch of mixed strings and pairs [[string], [string, string], ...]"


class ServeError(Exception):
    """An answer other than 200: ``error_type`` is one of TEI's kinds or a framework kind."""

    def __init__(self, error_type: str, message: str, status: int | None = None):
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self._status = status

    @property
    def status(self) -> int:
        return self._status or ERROR_STATUS.get(self.error_type) or FRAMEWORK_STATUS[self.error_type]

    def body(self) -> dict:
        return {"error": self.message, "error_type": self.error_type}


@dataclass(frozen=True)
class PredictRequest:
    """A parsed ``/predict`` body: ``inputs`` holds ``(text, pair or None)`` per sequence; ``batched`` says
    whether the answer is a list of answers (``inputs`` was a batch) or one answer."""

    inputs: list[tuple[str, str | None]]
    batched: bool
    truncate: bool = False
    raw_scores: bool = False


def parse_json(body: bytes) -> object:
    """The JSON value of a request body: 400 ``bad_request`` when it is not UTF-8 or not JSON."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ServeError(
            "bad_request", f"the request body is not valid UTF-8 ({e.reason} at byte {e.start})"
        ) from None
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError, ValueError) as e:  # (too deep, a number too long, ...)
        reason = str(e) if isinstance(e, ValueError) else "nested too deeply"
        raise ServeError("bad_request", f"the request body is not valid JSON: {reason}") from None


def _flag(payload: dict, key: str) -> bool:
    value = payload.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ServeError("bad_request", f"`{key}` must be true or false, got {json.dumps(value)}")
    return value


def _sequence(value: object, where: str) -> tuple[str, str | None]:
    """One batch element: ``[text]`` or ``[text, pair]``."""
    if not isinstance(value, list) or not 1 <= len(value) <= 2 or not all(isinstance(v, str) for v in value):
        raise ServeError(
            "bad_request", f"{where} must be [string] or [string, string]; `inputs` must be {SHAPES}"
        )
    return value[0], (value[1] if len(value) == 2 else None)


def parse_predict(body: bytes, max_client_batch_size: int) -> PredictRequest:
    """Parse and check a ``/predict`` body (unknown fields are ignored, as TEI does).

    Raises ServeError: ``bad_request`` (not JSON, wrong shape or type), ``empty`` (no input, or an empty
    text), ``validation`` (a batch over ``max_client_batch_size``), ``tokenizer`` (a text that is not
    valid Unicode, e.g. a lone surrogate escape).
    """
    payload = parse_json(body)
    if not isinstance(payload, dict):
        raise ServeError("bad_request", 'the request body must be a JSON object such as {"inputs": "text"}')
    if "inputs" not in payload:
        raise ServeError("bad_request", "missing field `inputs`")
    truncate, raw_scores = _flag(payload, "truncate"), _flag(payload, "raw_scores")
    direction = payload.get("truncation_direction")
    if direction is not None and str(direction).lower() != "right":
        raise ServeError(
            "validation", f"truncation_direction={json.dumps(direction)} is not supported; a run cuts texts as its "
            "data.truncation says (truncate=true)",
        )  # fmt: skip
    inputs = payload["inputs"]
    if isinstance(inputs, str):
        request = PredictRequest([(inputs, None)], False, truncate, raw_scores)
    elif not isinstance(inputs, list):
        raise ServeError("bad_request", f"`inputs` must be {SHAPES}")
    elif not inputs:
        raise ServeError("empty", "`inputs` cannot be empty")
    elif isinstance(inputs[0], str):
        if len(inputs) > 2 or not all(isinstance(v, str) for v in inputs):
            raise ServeError("bad_request", f"`inputs` must be {SHAPES}")
        request = PredictRequest([_sequence(inputs, "`inputs`")], False, truncate, raw_scores)
    else:
        if len(inputs) > max_client_batch_size:
            raise ServeError(
                "validation", f"batch size {len(inputs)} > maximum allowed batch size {max_client_batch_size}"
            )
        sequences = [_sequence(value, f"`inputs[{i}]`") for i, value in enumerate(inputs)]
        request = PredictRequest(sequences, True, truncate, raw_scores)
    for text, pair in request.inputs:
        for part in (text, pair):
            if part is None:
                continue
            if not part.strip():
                raise ServeError("empty", "`inputs` cannot be empty")
            try:
                part.encode("utf-8")
            except UnicodeEncodeError as e:
                raise ServeError(
                    "tokenizer", f"cannot tokenize the input: {e.reason} at character {e.start}"
                ) from None
    return request


def ranked(scores, names: list[str]) -> list[dict]:
    """``[{"score", "label"}]`` for one text, highest score first (ties keep label order)."""
    order = sorted(range(len(names)), key=lambda i: -scores[i])
    return [{"score": float(scores[i]), "label": str(names[i])} for i in order]
