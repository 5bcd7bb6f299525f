"""The registry's naming rule for aliases.

The records themselves (models, versions, artifacts, lineage) are the shared contracts in
genai_platform.contracts.registry, so the registry and its callers read one definition.
"""

from __future__ import annotations

import re

ALIAS = re.compile(r"^[a-z][a-z0-9_-]{0,49}$")


def check_alias(alias: str) -> str:
    """`alias` when it is 1-50 of `a-z 0-9 _ -` starting with a letter; ValueError otherwise."""
    if not ALIAS.match(alias):
        raise ValueError("an alias is 1-50 lowercase letters, digits, '_' or '-', starting with a letter")
    return alias
