"""Requests holding text that is not Unicode, one per string an OpenAPI document lets a client send.

For every operation: each string of its JSON body (top level, and inside arrays and objects down
to `MAX_DEPTH` levels, object keys included) holding a lone surrogate written as a JSON escape
(`"\\ud800"`, `"\\udfff"`), the rest of the body valid example values; each query and path
parameter, and each text field of a form, holding bytes that are not UTF-8 (`%ED%A0%80`, a
surrogate in CESU-8, and `%FF`: a lone surrogate cannot be in a valid UTF-8 URL). Each case says
the location the answer must name (`body.tags.0`, `query.collection`, `path.name`), as
genai_platform.text writes it. Used by tests/fuzz (the whole platform) and tests/unit (in process).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

SURROGATES = ("\ud800", "\udfff")
# A lone surrogate in CESU-8 and a byte that is never UTF-8, percent-encoded (a URL is ASCII).
NOT_UTF8 = ("%ED%A0%80", "%FF")
MAX_DEPTH = 3  # the top level and two levels down
_CANDIDATES = ("example", "a", "ab1", "doc-1", "x" * 8, "2024-01-01", "a" * 16)


@dataclass
class Case:
    """One request, and the location its 422 must name."""

    method: str
    path: str  # the operation's path template, as the document names it
    url: str  # the path to request, parameters filled
    location: str
    content: bytes | None = None
    content_type: str | None = None
    query: str = ""
    files: dict[str, Any] = field(default_factory=dict)
    data: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """A short readable name for a test id."""
        shown = self.location.encode("ascii", "backslashreplace").decode()
        return f"{self.method} {self.path} {shown} {self.content_type or 'url'}"


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with `$ref`s followed and an `allOf` merged into one object schema."""
    while "$ref" in schema:
        node: Any = document
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = {**node, **{k: v for k, v in schema.items() if k != "$ref"}}
    if "allOf" in schema:
        merged: dict[str, Any] = {"type": "object", "properties": {}, "required": []}
        for part in schema["allOf"]:
            part = resolve(document, part)
            merged["properties"].update(part.get("properties", {}))
            merged["required"] += part.get("required", [])
        schema = {**merged, **{k: v for k, v in schema.items() if k != "allOf"}}
    return schema


def _branches(document: dict[str, Any], schema: dict[str, Any]) -> list[dict[str, Any]]:
    found = schema.get("anyOf") or schema.get("oneOf")
    if not found:
        return [schema]
    branches = [resolve(document, s) for s in found]
    return [b for b in branches if b.get("type") != "null"] or branches


def _string(schema: dict[str, Any]) -> str:
    pattern, low = schema.get("pattern"), schema.get("minLength", 1)
    if schema.get("format") in ("uri", "url"):
        return "https://example.com/a"
    for candidate in _CANDIDATES:
        candidate = candidate.ljust(low, "a")
        if pattern is None or re.search(pattern, candidate):
            return candidate[: schema.get("maxLength", len(candidate))]
    return "a" * low


def example(document: dict[str, Any], schema: dict[str, Any], depth: int = 0) -> Any:
    """A valid value for `schema`: its own example, default or first choice, else one built by type."""
    schema = resolve(document, schema)
    for key in ("examples", "example", "default", "const", "enum"):
        value = schema.get(key)
        if value is not None and key in ("examples", "enum") and isinstance(value, list) and value:
            return value[0]
        if value is not None and key not in ("examples", "enum"):
            return value
    schema = _branches(document, schema)[0]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        return {
            name: example(document, sub, depth + 1)
            for name, sub in schema.get("properties", {}).items()
            if name in schema.get("required", [])
        }
    if kind == "array":
        items = schema.get("items", {"type": "string"})
        return [example(document, items, depth + 1) for _ in range(max(schema.get("minItems", 0), 1))]
    if kind == "integer":
        return int(schema.get("minimum", schema.get("exclusiveMinimum", 0) + 1))
    if kind == "number":
        return float(schema.get("minimum", 0.5))
    if kind == "boolean":
        return False
    if kind == "string":
        return _string(schema)
    return "a"


def variants(document: dict[str, Any], schema: dict[str, Any], bad: str, depth: int = 0) -> Iterator[tuple[tuple, Any]]:
    """(location under this value, a value for `schema` with one string replaced by `bad`), for
    every string `schema` lets a client send, object keys included."""
    if depth > MAX_DEPTH:
        return
    seen: set[tuple] = set()
    for branch in _branches(document, resolve(document, schema)):
        for where, value in _variants(document, branch, bad, depth):
            if where not in seen:
                seen.add(where)
                yield where, value


def _variants(document: dict[str, Any], schema: dict[str, Any], bad: str, depth: int) -> Iterator[tuple[tuple, Any]]:
    kind = schema.get("type")
    if kind == "string" and schema.get("format") != "binary":
        yield (), bad
    elif kind == "array" and depth < MAX_DEPTH:
        items = schema.get("items", {})
        filler = [example(document, items) for _ in range(max(schema.get("minItems", 1), 1) - 1)]
        for where, value in variants(document, items, bad, depth + 1):
            yield (0, *where), [value, *filler]
    elif (kind == "object" or "properties" in schema) and depth < MAX_DEPTH:
        base = example(document, schema)
        base = base if isinstance(base, dict) else {}
        for name, sub in schema.get("properties", {}).items():
            for where, value in variants(document, sub, bad, depth + 1):
                yield (name, *where), {**base, name: value}
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict) or extra is True or (kind == "object" and not schema.get("properties")):
            extra = extra if isinstance(extra, dict) else {"type": "string"}
            yield (bad,), {**base, bad: example(document, extra)}
            for where, value in variants(document, extra, bad, depth + 1):
                yield ("key", *where), {**base, "key": value}


def _shown(part: Any) -> str:
    return str(part).encode("utf-8", "backslashreplace").decode("utf-8")


def _fill(path: str, values: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), "example"), path)


def cases(document: dict[str, Any], excluded: set[tuple[str, str]] = frozenset()) -> list[Case]:  # type: ignore[assignment]
    """Every case for every operation of `document` but the `excluded` (method, path) pairs."""
    found: list[Case] = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or (method.upper(), path) in excluded:
                continue
            found += operation_cases(document, method.upper(), path, operation)
    return found


def operation_cases(document: dict[str, Any], method: str, path: str, operation: dict[str, Any]) -> list[Case]:
    """The cases of one operation: its body's strings, its parameters, its form's text fields."""
    found: list[Case] = []
    parameters = [resolve(document, p) for p in operation.get("parameters", [])]
    url = _fill(path, {})
    body = operation.get("requestBody", {}).get("content", {})
    json_schema = (body.get("application/json") or {}).get("schema")
    json_base = example(document, json_schema) if json_schema else None
    form_schema = (body.get("multipart/form-data") or {}).get("schema")
    for parameter in parameters:
        kind = resolve(document, parameter.get("schema", {}))
        if parameter["in"] not in ("query", "path") or "string" not in json.dumps(kind):
            continue
        for bad in NOT_UTF8:
            location = f"{parameter['in']}.{parameter['name']}"
            if parameter["in"] == "path":
                case = Case(method, path, _fill(path, {parameter["name"]: f"x{bad}y"}), location)
            else:
                case = Case(method, path, url, location, query=f"{parameter['name']}=x{bad}y")
            if json_base is not None:
                case.content, case.content_type = json.dumps(json_base).encode(), "application/json"
            found.append(case)
    if json_schema:
        for bad in SURROGATES:
            for where, value in variants(document, json_schema, bad):
                # json.dumps writes a lone surrogate as its JSON escape: the body itself is ASCII.
                content = json.dumps(value).encode("ascii")
                location = ".".join(_shown(part) for part in ("body", *where))
                found.append(Case(method, path, url, location, content=content, content_type="application/json"))
    if form_schema:
        form = resolve(document, form_schema)
        for name, sub in form.get("properties", {}).items():
            sub = resolve(document, sub)
            if "string" not in json.dumps(sub) or sub.get("format") == "binary" or "contentMediaType" in sub:
                continue  # a file: its content is the route's to judge
            for bad in (b"x\xed\xa0\x80y", b"x\xffy"):
                found.append(
                    Case(
                        method,
                        path,
                        url,
                        f"body.{name}",
                        content_type="multipart/form-data",
                        data={name: bad},
                        files={"file": ("a.txt", b"Some text.\n", "text/plain")},
                    )  # fmt: skip
                )
    return found
