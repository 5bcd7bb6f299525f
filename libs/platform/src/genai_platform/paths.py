"""Validated path parameters: what a URL may name before any store key is built from it.

Ids, names, labels and refs end up inside Dapr state keys, and through the gateway inside the
URL of a service invocation. A control character or non-ASCII text there fails deep in a
client or a store (a 500 or a 503); refused here it is a 422 problem+json naming the parameter
(`path.<name>`), raised by FastAPI's validation before the route runs. Every app declares its
path parameters with these types, or with `path_parameter` for an alphabet of its own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import Path

# ASCII letters, digits and `._:-`, starting with a letter or digit: every id the platform mints
# (`doc-<hex>`, `ftjob-<hex>`, `file-<hex>`, `ftwf-<hex>`) and nothing a key or URL must escape.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$"
_ID = re.compile(ID_PATTERN)


def path_parameter(pattern: str, description: str) -> Any:
    """A FastAPI `Path` whose value must match `pattern` (422 naming the parameter otherwise).

    `pattern` should be anchored and ASCII-only; pydantic matches it with the Rust regex
    engine, where `$` is the end of the text (a trailing newline does not match).
    """
    return Path(pattern=pattern, description=description)


def invalid_path_parameters(params: Mapping[str, str]) -> list[dict[str, str]]:
    """The parameters in `params` that do not match ID_PATTERN, each `{"location": "path.<name>", "message"}`.

    For a relay (the gateway) that forwards a path it does not declare: daprd 1.18 rejects a
    service-invocation method holding control characters (dapr/dapr#10409, `NormalizeMethod`),
    so such a path must be refused before it is sent, in the shape of a validation error.
    """
    return [
        {"location": f"path.{name}", "message": f"String should match pattern '{ID_PATTERN}'"}
        for name, value in params.items()
        if not _ID.fullmatch(value)  # fullmatch: a trailing newline does not slip past `$`
    ]


# The id of a stored record (a document, a file, a job, a workflow): up to 200 characters of ID_PATTERN.
ResourceId = Annotated[str, path_parameter(ID_PATTERN, f"An id made by the platform; matches `{ID_PATTERN}`.")]
