"""Checks of an OpenAPI document that the unit test (built in process) and the e2e test (the
gateway's GET /v1/openapi.json) both make: every public route says what it answers."""

from __future__ import annotations

from typing import Any

from gateway.openapi import METHODS


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """`(METHOD, path, operation)` of every operation in the document."""
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def _has_ref(node: Any) -> bool:
    if isinstance(node, dict):
        return "$ref" in node or any(_has_ref(value) for value in node.values())
    return isinstance(node, list) and any(_has_ref(value) for value in node)


def answer_is_described(operation: dict[str, Any]) -> bool:
    """Whether the operation has a 2xx answer whose schema names a model (a `$ref`), or a bodiless 204."""
    for status, response in operation.get("responses", {}).items():
        if status == "204" and not response.get("content"):
            return True
        if status.startswith("2") and any(
            _has_ref(media.get("schema")) for media in response.get("content", {}).values()
        ):
            return True
    return False


def undescribed_operations(document: dict[str, Any]) -> set[str]:
    """`"METHOD path"` of each operation that does not say what it answers."""
    return {
        f"{method} {path}" for method, path, operation in operations(document) if not answer_is_described(operation)
    }
