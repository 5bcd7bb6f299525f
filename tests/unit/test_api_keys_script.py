"""scripts/api_keys.py in-process: `add` takes its scopes by name (a new-user trial found that
`add` with none silently made a key holding every scope), and `rotate` keeps the key's usage."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from gateway.api_keys import key_digest, parse_keys
from gateway.scopes import ALL, SCOPES

ROOT = Path(__file__).resolve().parents[2]
_SPEC = importlib.util.spec_from_file_location("api_keys_script", ROOT / "scripts" / "api_keys.py")
script = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = script  # its dataclasses look their module up there
_SPEC.loader.exec_module(script)


@pytest.fixture
def secrets_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # No running gateway is looked for: this checkout's may be up, and is not this test's to reload.
    monkeypatch.setattr(script, "processes", list)
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps({"gateway-api-keys": "k-first"}))
    return path


def run(secrets_file: Path, *args: str) -> int:
    component = secrets_file.parent / "dapr-resources" / "gateway-keys.yaml"
    return script.main(["--secrets", str(secrets_file), "--component", str(component), *args])


def keys(secrets_file: Path) -> dict[str, frozenset[str]]:
    return {k.key: k.scopes for k in parse_keys(json.loads(secrets_file.read_text())["gateway-api-keys"])}


def test_add_without_scopes_is_refused_naming_them(secrets_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(secrets_file, "add") == 1
    out = capsys.readouterr()
    assert out.out == ""  # no key printed
    assert "name the new key's scopes (SCOPE..., at least one)" in out.err
    assert all(scope in out.err for scope in SCOPES) and "`all` for every scope" in out.err
    assert keys(secrets_file) == {"k-first": frozenset({ALL})}  # the file is as it was


def test_add_with_an_unknown_scope_is_refused(secrets_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(secrets_file, "add", "chat", "chta") == 1
    assert "unknown scopes ['chta']; known: chat, documents:read" in capsys.readouterr().err
    assert list(keys(secrets_file)) == ["k-first"]


def test_add_gives_exactly_the_scopes_named(secrets_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(secrets_file, "add", "chat", "documents:read") == 0
    new_key = capsys.readouterr().out.strip()
    assert new_key.startswith("gk-")
    assert keys(secrets_file) == {"k-first": frozenset({ALL}), new_key: frozenset({"chat", "documents:read"})}


@pytest.mark.parametrize("every", ["all", "*"])
def test_every_scope_is_asked_for_by_name(every: str, secrets_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(secrets_file, "add", every) == 0
    new_key = capsys.readouterr().out.strip()
    assert keys(secrets_file)[new_key] == frozenset({ALL})
    # Written as the gateway writes every scope: a bare key.
    assert json.loads(secrets_file.read_text())["gateway-api-keys"] == f"k-first,{new_key}"


def entries(secrets_file: Path) -> dict[str, tuple[frozenset[str], str | None]]:
    return {k.key: (k.scopes, k.project) for k in parse_keys(json.loads(secrets_file.read_text())["gateway-api-keys"])}


def test_a_rotated_key_keeps_its_usage_account(secrets_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A rotation reset the key's daily quota: its usage was counted under the old key's digest."""
    old = next(iter(parse_keys("k-first")))
    assert run(secrets_file, "rotate", "k-first") == 0
    successor = capsys.readouterr().out.strip()
    (entry,) = parse_keys(json.loads(secrets_file.read_text())["gateway-api-keys"])
    assert entry.key == successor and entry.scopes == frozenset({ALL})
    assert entry.project == key_digest("k-first") and entry.account == old.account
    # Rotated again, it keeps that project, and the usage with it.
    assert run(secrets_file, "rotate", successor) == 0
    third = capsys.readouterr().out.strip()
    assert entries(secrets_file) == {third: (frozenset({ALL}), key_digest("k-first"))}


def test_add_puts_a_key_in_a_project_and_refuses_a_bad_name(
    secrets_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(secrets_file, "add", "--project", "acme", "chat") == 0
    new_key = capsys.readouterr().out.strip()
    assert json.loads(secrets_file.read_text())["gateway-api-keys"] == f"k-first,{new_key}=chat project=acme"
    assert run(secrets_file, "add", "--project", "a b", "chat") == 1
    assert "--project 'a b' is not a project name" in capsys.readouterr().err
    assert list(entries(secrets_file)) == ["k-first", new_key]


def test_a_project_and_every_scope_round_trip() -> None:
    keys = {k.key: k for k in parse_keys("a,b=* project=p,c=chat models:read project=q.1")}
    assert script.format_keys(keys) == "a,b=* project=p,c=chat models:read project=q.1"
