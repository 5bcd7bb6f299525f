"""Add, remove or rotate a gateway API key locally, and make the running gateways use it at once.

    uv run --frozen --no-sync python scripts/api_keys.py add SCOPE...      # prints the new key
    uv run --frozen --no-sync python scripts/api_keys.py add all          # every scope, asked for by name
    uv run --frozen --no-sync python scripts/api_keys.py add --project acme chat   # in project acme
    uv run --frozen --no-sync python scripts/api_keys.py rotate KEY        # same scopes and usage, new key
    uv run --frozen --no-sync python scripts/api_keys.py remove KEY
    uv run --frozen --no-sync python scripts/api_keys.py reload            # after editing the file by hand

The keys are the `gateway-api-keys` entry of the local secrets file (`.data/secrets.json`, or
`--secrets FILE`), in the format of `gateway.api_keys.parse_keys`, where a key written without
scopes holds every scope. `add` therefore takes its scopes by name, at least one (`all`, or `*`
as the gateway writes it, for every scope): a key added without naming any would silently hold
them all; `--project NAME` puts it in a project, whose keys share one usage record. `rotate`
keeps the key's scopes and its usage: the new key gets the old one's project, or, when it had
none, `project=<the old key's SHA-256 digest>`, the account its usage was counted under
(gateway.api_keys.ApiKey.account). No tracked file changes.

How the running gateways take the new keys: Dapr's local file secret store
(`secretstores.local.file`) reads its file only when the component is initialised. Under `make up`
the gateway reads its keys from a store of its own, `gateway-keys` over the same file, whose
component file is `.data/dapr-resources/gateway-keys.yaml` (`--component FILE`) in a resources path
of every sidecar. This script rewrites that file with a new `generation`; daprd 1.18's hot reload
(feature `HotReload`, on by default) compares component specs on every change in a resources path
and closes and initialises again only a component whose spec changed, so the store reads the
secrets file again (pkg/runtime/hotreload/reconciler/components.go; 37 ms median here). The script then
waits until each gateway sidecar that watches the file serves the new keys (at most `--timeout`
seconds, 60 by default) and sends SIGHUP to each gateway app beside such a sidecar, which reads its
keys again on the next request (`gateway.api_keys.ApiKeys.expire_on_sighup`). Nothing restarts, not even in-process:
a SIGHUP to daprd 1.18 restarts its runtime, after which its /metrics answers 500 ("was collected
before with the same name and label values") until the process restarts. A request that meets
the store's re-initialisation may get a 503 problem+json.

Exits 1 with a message when the key is unknown, `add` names no scope or an unknown one (the
message lists the known scopes), or a sidecar did not serve
the new keys in time; 0 when no gateway runs (the files alone changed: the next start reads them).
A gateway sidecar that does not watch the component (a bare `dapr run -f .`, tye) is named on
stderr: it keeps the old keys until it restarts.
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

from gateway.api_keys import PROJECT, PROJECT_NAME, ApiKey, key_digest, parse_keys
from gateway.scopes import ALL, SCOPES

ROOT = Path(__file__).resolve().parents[1]
SECRET_NAME = "gateway-api-keys"
# The gateway's own key store under `make up` (scripts/sidecar_configs.py gives the gateway
# SECRET_STORE=gateway-keys and every sidecar the component's folder as a resources path).
KEYS_STORE = "gateway-keys"
COMPONENT = ROOT / ".data" / "dapr-resources" / f"{KEYS_STORE}.yaml"


class Refused(Exception):
    """A request this script refuses (unknown key or scope, a sidecar that did not reload)."""


@dataclass(frozen=True)
class Process:
    pid: int
    argv: list[str]


def read_keys(path: Path) -> tuple[dict[str, str], dict[str, ApiKey]]:
    """The secrets file and its API keys (key -> its entry, in file order); Refused when unreadable."""
    try:
        data = json.loads(path.read_text())
    except OSError as error:
        raise Refused(f"cannot read {path}: {error.strerror} (`make up` or scripts/secrets.sh writes it)") from None
    except json.JSONDecodeError as error:
        raise Refused(f"{path} is not JSON ({error.msg}, line {error.lineno})") from None
    if not isinstance(data, dict):
        raise Refused(f"{path} is not a JSON object of secrets")
    return data, {key.key: key for key in parse_keys(data.get(SECRET_NAME, ""))}


def format_keys(keys: dict[str, ApiKey]) -> str:
    """The secret's value: `<key>` for every scope, `<key>=<scope> <scope>` otherwise, and
    `project=<name>` among the scopes of a key in a project (`*` standing for every scope)."""

    def entry(key: ApiKey) -> str:
        words = sorted(key.scopes) + ([f"{PROJECT}={key.project}"] if key.project else [])
        return key.key if words == [ALL] else f"{key.key}={' '.join(words)}"

    return ",".join(entry(key) for key in keys.values())


def write_secrets(path: Path, data: dict[str, str]) -> None:
    """Replace the file atomically, mode 600 as scripts/secrets.sh makes it."""
    tmp = path.with_name(f"{path.name}.tmp.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        json.dump(data, file, indent=2)
    os.replace(tmp, path)


def write_component(path: Path, secrets_file: Path) -> None:
    """Write the `gateway-keys` component (a local file store over `secrets_file`, scoped to the
    gateway) with a new `generation`, atomically: a daprd watching its folder re-initialises it."""
    text = f"""# Written by scripts/api_keys.py at every key change; `make up` writes it at start.
# The gateway's API keys: a local file store over the secrets file, the gateway's alone.
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: {KEYS_STORE}
spec:
  type: secretstores.local.file
  version: v1
  metadata:
    - name: secretsFile
      value: {json.dumps(str(secrets_file.resolve()))}
    - name: nestedSeparator
      value: ":"
    # Not read by the store: a new value makes daprd's hot reload see a changed spec, so it
    # initialises this component again, which reads the file again.
    - name: generation
      value: "{time.time_ns()}"
scopes:
  - gateway
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}")  # not YAML: daprd skips it while written
    tmp.write_text(text)
    os.replace(tmp, path)


def new_key() -> str:
    """A key of the form scripts/secrets.sh gives the dev key: `gk-` and 48 hex digits."""
    return f"gk-{secrets.token_hex(24)}"


# `add all` (or `add '*'`, quoted from the shell) asks for every scope: the gateway's ALL.
EVERY_SCOPE = ("all", ALL)


def checked_scopes(scopes: list[str]) -> frozenset[str]:
    """The scopes a new key gets: those named, or ALL when `all`/`*` is among them.

    Raises Refused, listing the known scopes, when none is named (a key written without scopes
    would hold every one: that has to be asked for) or one is unknown.
    """
    known = f"{', '.join(SCOPES)}; or `all` for every scope"
    if not scopes:
        raise Refused(f"add: name the new key's scopes (SCOPE..., at least one): {known}")
    if any(scope in EVERY_SCOPE for scope in scopes):
        return frozenset({ALL})
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise Refused(f"add: unknown scopes {unknown}; known: {known}")
    return frozenset(scopes)


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


def flags(argv: list[str], name: str) -> list[str]:
    """Every value of `--name value` or `--name=value` in argv (daprd takes both)."""
    found = []
    for index, arg in enumerate(argv):
        if arg == name and index + 1 < len(argv):
            found.append(argv[index + 1])
        elif arg.startswith(f"{name}="):
            found.append(arg.split("=", 1)[1])
    return found


def flag(argv: list[str], name: str) -> str | None:
    """The first value of `--name` in argv, or None."""
    return next(iter(flags(argv, name)), None)


def watches(sidecar: Process, folder: Path) -> bool:
    """Whether the sidecar has `folder` among its resources paths (relative ones are daprd's cwd's)."""
    try:
        cwd = Path(f"/proc/{sidecar.pid}/cwd").resolve()
    except OSError:
        return False
    paths = flags(sidecar.argv, "--resources-path") + flags(sidecar.argv, "--components-path")
    return any((cwd / path).resolve() == folder.resolve() for path in paths)


def gateway_sidecars(found: list[Process]) -> list[Process]:
    return [p for p in found if Path(p.argv[0]).name == "daprd" and flag(p.argv, "--app-id") == "gateway"]


def gateway_apps(found: list[Process]) -> list[Process]:
    """`python -m gateway` processes; not the `uv run ... python -m gateway` wrapper of `make up`."""
    return [p for p in found if p.argv[1:3] == ["-m", "gateway"]]


def environ(process: Process) -> dict[str, str]:
    """The process's environment as it started ({} when it is gone or not ours to read)."""
    try:
        text = Path(f"/proc/{process.pid}/environ").read_text(errors="replace")
    except OSError:
        return {}
    return dict(line.split("=", 1) for line in text.split("\0") if "=" in line)


def http_port(sidecar: Process) -> str:
    return flag(sidecar.argv, "--dapr-http-port") or "3500"


def served_keys(sidecar: Process) -> str | None:
    """What the sidecar's secrets API returns for the keys now, or None while it does not answer."""
    port = http_port(sidecar)
    token = environ(sidecar).get("DAPR_API_TOKEN", "")
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1.0/secrets/{KEYS_STORE}/{SECRET_NAME}", headers={"dapr-api-token": token}
    )
    try:
        with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310 (loopback URL built here)
            return json.load(response).get(SECRET_NAME)
    except (OSError, ValueError):
        return None


def reload_gateways(expected: str, timeout: float, component: Path, secrets_file: Path) -> tuple[int, float]:
    """Rewrite the key store's component, wait until each gateway sidecar watching it serves
    `expected`, then SIGHUP each gateway app.

    Returns the number of gateway apps signalled (those whose DAPR_HTTP_PORT is a reloaded
    sidecar's) and the seconds from the component's write until every watching sidecar served
    the new keys; raises Refused when a sidecar is still on the old keys after `timeout` seconds.
    Names on stderr each gateway sidecar that does not watch the component (it keeps its keys
    until it restarts), and leaves its app alone.
    """
    found = processes()
    sidecars = gateway_sidecars(found)
    watching = [sidecar for sidecar in sidecars if watches(sidecar, component.parent)]
    written = time.monotonic()
    write_component(component, secrets_file)
    for sidecar in sidecars:
        if sidecar not in watching:
            sys.stderr.write(
                f"api-keys: the gateway sidecar (pid {sidecar.pid}) does not watch {component.parent}: "
                "it keeps the old keys until it restarts\n"
            )
    deadline = written + timeout
    for sidecar in watching:
        while served_keys(sidecar) != expected:
            if time.monotonic() > deadline:
                raise Refused(f"the gateway sidecar (pid {sidecar.pid}) did not serve the new keys in {timeout:.0f}s")
            time.sleep(0.005)
    served = time.monotonic() - written
    ports = {http_port(sidecar) for sidecar in watching}
    apps = [app for app in gateway_apps(found) if environ(app).get("DAPR_HTTP_PORT") in ports]
    for app in apps:
        os.kill(app.pid, signal.SIGHUP)
    return len(apps), served


def main(argv: list[str] | None = None) -> int:
    """Run one command (`argv`: the arguments after the script's name; None: sys.argv's);
    returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--secrets", type=Path, default=ROOT / ".data" / "secrets.json")
    parser.add_argument("--component", type=Path, default=COMPONENT, help="the gateway key store's component file")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for each sidecar")
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add", help="a new key with these scopes (`all`: every scope)")
    add.add_argument("scopes", nargs="*", metavar="SCOPE", help=f"one or more of {', '.join(SCOPES)}, or all")
    add.add_argument("--project", help="the project whose keys share the new key's usage (1-64 of A-Z a-z 0-9 . _ -)")
    rotate = commands.add_parser("rotate", help="replace KEY by a new key with the same scopes and usage")
    rotate.add_argument("key")
    remove = commands.add_parser("remove", help="remove KEY")
    remove.add_argument("key")
    commands.add_parser("reload", help="make the running gateways read the file again (after editing it)")
    args = parser.parse_args(argv)

    try:
        scopes = checked_scopes(args.scopes) if args.command == "add" else None
        if args.command == "add" and args.project is not None and not PROJECT_NAME.fullmatch(args.project):
            raise Refused(f"add: --project {args.project!r} is not a project name (1-64 of A-Z a-z 0-9 . _ -)")
        data, keys = read_keys(args.secrets)
        created = None
        if scopes is not None:
            created = new_key()
            keys[created] = ApiKey(created, scopes, args.project)
        elif args.command != "reload":
            if args.key not in keys:
                raise Refused(f"no such key in {args.secrets}")
            if args.command == "rotate":
                # In place: the key keeps its position, so "the first key" (the README's snippets)
                # is the same key's successor; and its usage account, so its count carries over.
                created, old = new_key(), keys[args.key]
                successor = ApiKey(created, old.scopes, old.project or key_digest(old.key))
                keys = {
                    created if key == args.key else key: successor if key == args.key else entry
                    for key, entry in keys.items()
                }
            else:
                if len(keys) == 1:
                    raise Refused("that is the only key: removing it would refuse every caller (add another first)")
                keys.pop(args.key)
        if args.command != "reload":
            data[SECRET_NAME] = format_keys(keys)
            write_secrets(args.secrets, data)
        # The new key goes out before the reload, so a reload that times out does not lose it.
        if created is not None:
            sys.stdout.write(f"{created}\n")
            sys.stdout.flush()
        reloaded, served = reload_gateways(data.get(SECRET_NAME, ""), args.timeout, args.component, args.secrets)
    except Refused as error:
        sys.stderr.write(f"api-keys: {error}\n")
        return 1
    took = f" (the sidecar served the new keys {served * 1000:.0f} ms after the reload began)" if reloaded else ""
    sys.stderr.write(f"api-keys: {args.command} done; {reloaded} running gateway(s) reloaded{took}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
