"""Helpers of the fault tests (test_faults_*.py): Redis as the default profile's broker sees it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import yaml

from harness import PROFILES, read_secrets

REDIS_PORT = 6379


def redis_cli(*args: str) -> str:
    """Run one redis-cli command against the default profile's Redis; its raw output."""
    result = subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", str(REDIS_PORT), "--raw", *args],
        env={**os.environ, "REDISCLI_AUTH": read_secrets()["redis-password"]},  # kept out of the process list
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def components_copy(folder: Path, changes: dict[str, dict[str, str]]) -> Path:
    """The default profile's components copied into `folder`, with metadata values replaced:
    file name -> {metadata name: new value}. Each replaced item must exist."""
    for source in PROFILES["default"].glob("*.yaml"):
        shutil.copy(source, folder / source.name)
    for name, values in changes.items():
        component = yaml.safe_load((folder / name).read_text())
        items = {item["name"]: item for item in component["spec"]["metadata"]}
        for key, value in values.items():
            items[key]["value"] = value
        (folder / name).write_text(yaml.safe_dump(component))
    return folder
