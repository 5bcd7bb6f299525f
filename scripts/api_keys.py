"""Add, remove or rotate a gateway API key locally, and make the running gateways use it at once.

    uv run --frozen --no-sync python scripts/api_keys.py add [SCOPE...]    # prints the new key
    uv run --frozen --no-sync python scripts/api_keys.py rotate KEY        # same scopes, new key
    uv run --frozen --no-sync python scripts/api_keys.py remove KEY

The keys are the `gateway-api-keys` entry of the local secrets file (`.data/secrets.json`, or
`--secrets FILE`), in the format of `gateway.api_keys.parse_keys`; a key without scopes holds
every scope. No tracked file changes.

Why a reload is needed: Dapr's local file secret store (`secretstores.local.file`) reads its file
once, when the component is initialised; a hot reload re-initialises a component only when its
spec changes. daprd 1.18 restarts its runtime in the same process on SIGHUP, which initialises
every component again and so reads the file again. So after writing the file this sends SIGHUP
to every gateway sidecar of this checkout, waits until each one's secrets API returns the new
value (at most `--timeout` seconds, 60 by default), then sends SIGHUP to every gateway app, which
reads its keys again on the next request (`gateway.api_keys.ApiKeys.expire_on_sighup`). No
process is restarted; a request that meets the sidecar's reload (40-50 ms in the test's daprd
log) may get a 503 problem+json.

Exits 1 with a message when the key is unknown, a scope is unknown, or a sidecar did not serve
the new keys in time; 0 when no gateway runs (the file alone changed: the next start reads it).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from gateway.api_keys import parse_keys
from gateway.scopes import ALL, SCOPES

ROOT = Path(__file__).resolve().parents[1]
SECRET_NAME = "gateway-api-keys"
# The secret store component's name in every profile (components/secretstore.yaml).
SECRET_STORE = "secretstore"


class Refused(Exception):
    """A request this script refuses (unknown key or scope, a sidecar that did not reload)."""


@dataclass(frozen=True)
class Process:
    pid: int
    argv: list[str]


def read_keys(path: Path) -> tuple[dict[str, str], dict[str, frozenset[str]]]:
    """The secrets file and its API keys (key -> scopes, in file order); Refused when unreadable."""
    try:
        data = json.loads(path.read_text())
    except OSError as error:
        raise Refused(f"cannot read {path}: {error.strerror} (`make up` or scripts/secrets.sh writes it)") from None
    except json.JSONDecodeError as error:
        raise Refused(f"{path} is not JSON ({error.msg}, line {error.lineno})") from None
    if not isinstance(data, dict):
        raise Refused(f"{path} is not a JSON object of secrets")
    return data, {key.key: key.scopes for key in parse_keys(data.get(SECRET_NAME, ""))}


def format_keys(keys: dict[str, frozenset[str]]) -> str:
    """The secret's value: `<key>` for every scope, `<key>=<scope> <scope>` otherwise."""
    return ",".join(key if ALL in scopes else f"{key}={' '.join(sorted(scopes))}" for key, scopes in keys.items())


def write_secrets(path: Path, data: dict[str, str]) -> None:
    """Replace the file atomically, mode 600 as scripts/secrets.sh makes it."""
    tmp = path.with_name(f"{path.name}.tmp.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        json.dump(data, file, indent=2)
    os.replace(tmp, path)


def new_key() -> str:
    """A key of the form scripts/secrets.sh gives the dev key: `gk-` and 48 hex digits."""
    return f"gk-{secrets.token_hex(24)}"


def checked_scopes(scopes: list[str]) -> frozenset[str]:
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise Refused(f"unknown scopes {unknown}; known: {sorted(SCOPES)}")
    return frozenset(scopes) or frozenset({ALL})


def processes() -> list[Process]:
    """Every live process of this checkout: its program is under the repo root (daprd, the venv's
    Python), or it runs in the repo root (`uv run`'s `python`, started by name)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
            ours = bool(argv) and (argv[0].startswith(f"{ROOT}/") or (entry / "cwd").resolve() == ROOT)
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if ours:
            found.append(Process(int(entry.name), argv))
    return found


def flag(argv: list[str], name: str) -> str | None:
    """The value of `--name value` or `--name=value` in argv (daprd takes both)."""
    for index, arg in enumerate(argv):
        if arg == name and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
    return None


def gateway_sidecars(found: list[Process]) -> list[Process]:
    return [p for p in found if Path(p.argv[0]).name == "daprd" and flag(p.argv, "--app-id") == "gateway"]


def gateway_apps(found: list[Process]) -> list[Process]:
    return [p for p in found if "-m" in p.argv and p.argv[p.argv.index("-m") + 1 :][:1] == ["gateway"]]


def served_keys(sidecar: Process) -> str | None:
    """What the sidecar's secrets API returns for the keys now, or None while it does not answer."""
    port = flag(sidecar.argv, "--dapr-http-port") or "3500"
    try:
        token = dict(
            line.split("=", 1) for line in Path(f"/proc/{sidecar.pid}/environ").read_text().split("\0") if "=" in line
        ).get("DAPR_API_TOKEN", "")
    except OSError:
        return None
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1.0/secrets/{SECRET_STORE}/{SECRET_NAME}", headers={"dapr-api-token": token}
    )
    try:
        with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310 (loopback URL built here)
            return json.load(response).get(SECRET_NAME)
    except (OSError, ValueError):
        return None


def reload_gateways(expected: str, timeout: float) -> int:
    """SIGHUP each gateway sidecar, wait until it serves `expected`, then SIGHUP each gateway app.

    Returns the number of gateways reloaded; raises Refused when a sidecar is still on the old
    keys after `timeout` seconds.
    """
    found = processes()
    sidecars, apps = gateway_sidecars(found), gateway_apps(found)
    for sidecar in sidecars:
        os.kill(sidecar.pid, signal.SIGHUP)
    deadline = time.monotonic() + timeout
    for sidecar in sidecars:
        while served_keys(sidecar) != expected:
            if time.monotonic() > deadline:
                raise Refused(f"the gateway sidecar (pid {sidecar.pid}) did not serve the new keys in {timeout:.0f}s")
            time.sleep(0.2)
    for app in apps:
        os.kill(app.pid, signal.SIGHUP)
    return len(apps)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--secrets", type=Path, default=ROOT / ".data" / "secrets.json")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for each sidecar")
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add", help="a new key with these scopes (none: every scope)")
    add.add_argument("scopes", nargs="*")
    rotate = commands.add_parser("rotate", help="replace KEY by a new key with the same scopes")
    rotate.add_argument("key")
    remove = commands.add_parser("remove", help="remove KEY")
    remove.add_argument("key")
    args = parser.parse_args()

    try:
        data, keys = read_keys(args.secrets)
        created = None
        if args.command == "add":
            created = new_key()
            keys[created] = checked_scopes(args.scopes)
        else:
            if args.key not in keys:
                raise Refused(f"no such key in {args.secrets}")
            if args.command == "rotate":
                # In place: the key keeps its position, so "the first key" (the README's snippets)
                # is the same key's successor.
                created = new_key()
                keys = {created if key == args.key else key: scopes for key, scopes in keys.items()}
            else:
                if len(keys) == 1:
                    raise Refused("that is the only key: removing it would refuse every caller (add another first)")
                keys.pop(args.key)
        data[SECRET_NAME] = format_keys(keys)
        write_secrets(args.secrets, data)
        # The new key goes out before the reload, so a reload that times out does not lose it.
        if created is not None:
            sys.stdout.write(f"{created}\n")
            sys.stdout.flush()
        reloaded = reload_gateways(data[SECRET_NAME], args.timeout)
    except Refused as error:
        sys.stderr.write(f"api-keys: {error}\n")
        return 1
    sys.stderr.write(f"api-keys: {args.command} done; {reloaded} running gateway(s) reloaded\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
