"""JSON answers: the text parses as JSON (a fenced ```json block is accepted) and fits a schema."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from guard.rails import Finding, Scan

_FENCE = re.compile(r"^\s*```(?:json)?\s*\n(.*?)\n?```\s*$", re.DOTALL)
MAX_ERRORS = 10


class InvalidSchema(ValueError):
    """The caller's schema is not a JSON Schema."""


@lru_cache(maxsize=128)
def _validator(schema_json: str) -> Draft202012Validator:
    schema = json.loads(schema_json)
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as error:
        raise InvalidSchema(error.message) from None
    return Draft202012Validator(schema)


def validator_for(schema: dict[str, Any]) -> Draft202012Validator:
    """A JSON Schema (draft 2020-12) validator for `schema`, cached; raises `InvalidSchema` for a bad schema."""
    return _validator(json.dumps(schema, sort_keys=True))


def scan(text: str, schema: dict[str, Any] | None) -> Scan:
    """`schema` None means "any JSON object" (OpenAI's `response_format: json_object`)."""
    fenced = _FENCE.match(text)
    body = fenced.group(1) if fenced else text
    try:
        document = json.loads(body)
    except json.JSONDecodeError as error:
        return Scan(1.0, (Finding("invalid_json", 0, len(text), detail=f"line {error.lineno}: {error.msg}"),))
    if schema is None:
        if isinstance(document, dict):
            return Scan()
        return Scan(1.0, (Finding("not_an_object", 0, len(text), detail="expected a JSON object"),))
    findings = []
    for error in validator_for(schema).iter_errors(document):
        path = "/".join(str(p) for p in error.absolute_path) or "(root)"
        # The validator keyword, not jsonschema's message: messages quote the values.
        findings.append(Finding("schema", 0, len(text), detail=f"{path}: fails `{error.validator}`"))
        if len(findings) == MAX_ERRORS:
            break
    return Scan(1.0 if findings else 0.0, tuple(findings))
