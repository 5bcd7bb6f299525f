"""The test harness's sidecars resolve names in a file of their own, never the platform's.

`make up`'s sidecars register in .data/nameresolution.db (dapr-config/config.yaml); a test's
sidecar registered there too was load-balanced with the platform's app of the same id (5 of 24
streamed chats of a running platform ended in a 503 while tests ran beside it). The sidecars
themselves: tests/integration/test_name_resolution_isolation.py.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from harness import CONFIG, NAMES_FILE, ROOT, own_config, session_config


def _names(config: Path) -> str:
    return yaml.safe_load(config.read_text())["spec"]["nameResolution"]["configuration"]["connectionString"]


def test_the_copy_names_a_file_in_its_folder_and_changes_nothing_else(tmp_path: Path) -> None:
    platform = yaml.safe_load(CONFIG.read_text())
    copy = yaml.safe_load(own_config(tmp_path).read_text())
    assert _names(CONFIG) == ".data/nameresolution.db"
    assert copy["spec"]["nameResolution"]["configuration"]["connectionString"] == str(tmp_path / NAMES_FILE)
    copy["spec"]["nameResolution"]["configuration"]["connectionString"] = _names(CONFIG)
    assert copy == platform


def test_every_sidecar_of_a_session_shares_one_file_that_is_not_the_platforms() -> None:
    config = session_config()
    assert session_config() == config
    names = Path(_names(config))
    assert names.is_absolute() and names == config.parent / NAMES_FILE
    assert names.resolve() != (ROOT / _names(CONFIG)).resolve()
    assert not names.is_relative_to(ROOT)
