"""Write the run file `make up` hands the dapr CLI: dapr.yaml with each sidecar's own configuration.

Usage: python scripts/sidecar_configs.py <run file> <resources folder> <output run file> <config dir> <keys component>

Each sidecar gets one Configuration file in <config dir>/<app-id>.yaml: dapr-config/config.yaml,
then dapr-config/access/<app-id>.yaml (who may invoke the app), then `mtls.enabled: true`, merged
in that order (a later mapping's keys win, as daprd merges repeated `--config` files, which the
test harness passes instead). A run file takes one `configFilePath` per app, so the layers are
merged here. `mtls.enabled` is also what makes the dapr CLI start daprd with `--enable-mtls
--sentry-address localhost:50001` (dapr/cli pkg/standalone/run.go, mtlsEndpoint), where
scripts/run-platform.sh runs Dapr's sentry. The run file's `./components` becomes the profile's
folder.

The gateway reads its API keys from a store of its own, `gateway-keys` (SECRET_STORE), whose
component file <keys component> is written here and rewritten by scripts/api_keys.py at every key
change; its folder is one more resources path of every sidecar, so daprd's hot reload initialises
that one component again and nothing restarts. Every output is git-ignored.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml
from api_keys import KEYS_STORE, write_component

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "dapr-config" / "config.yaml"
ACCESS = ROOT / "dapr-config" / "access"


def merged(base: dict[str, Any], layer: dict[str, Any]) -> dict[str, Any]:
    """`base` with `layer` on top: mappings merged key by key, anything else replaced by the layer's."""
    out = dict(base)
    for key, value in layer.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def sidecar_config(app_id: str) -> dict[str, Any]:
    """The Configuration one app's sidecar runs with: shared settings, its access policy, mTLS on."""
    config = yaml.safe_load(BASE.read_text())
    if (access := ACCESS / f"{app_id}.yaml").is_file():
        config = merged(config, yaml.safe_load(access.read_text()))
    config = merged(config, {"spec": {"mtls": {"enabled": True}}})
    config["metadata"] = {"name": app_id}
    return config


def main(run_file: Path, resources: str, out_file: Path, config_dir: Path, keys_component: str) -> None:
    run = yaml.safe_load(run_file.read_text())
    config_dir.mkdir(parents=True, exist_ok=True)
    paths = [resources if p == "./components" else p for p in run["common"]["resourcesPaths"]]
    run["common"]["resourcesPaths"] = [*paths, str(Path(keys_component).parent)]
    secrets_file = run_file.resolve().parent / ".data" / "secrets.json"
    write_component(run_file.resolve().parent / keys_component, secrets_file)
    for app in run["apps"]:
        if app["appID"] == "gateway":
            app["env"] = {**app.get("env", {}), "SECRET_STORE": KEYS_STORE}
        path = config_dir / f"{app['appID']}.yaml"
        path.write_text(yaml.safe_dump(sidecar_config(app["appID"]), sort_keys=False))
        app["configFilePath"] = str(path.resolve())
    header = f"# Written by scripts/sidecar_configs.py from {run_file.name} for `make up`; edit that file instead.\n"
    out_file.write_text(header + yaml.safe_dump(run, sort_keys=False))


if __name__ == "__main__":
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]), sys.argv[5])
