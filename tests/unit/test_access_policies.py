"""The service-invocation policies: one per app locally (dapr-config/access/), the same in the cluster.

Each app's sidecar layers dapr-config/access/<app>.yaml on the shared config (tests/harness.py
passes both as `--config`; `make up` gives each sidecar one file merged by
scripts/sidecar_configs.py); the cluster gives each app its own Configuration
(k8s/base/dapr/configurations.yaml). They must say the same, up to the namespace the caller runs
in (`default` on this machine, `genai` in the cluster). What the sidecars do with them:
tests/integration/test_access_control.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
APPS = {"gateway", "ingestion", "features", "training", "registry", "inference", "prompts", "guard", "ui", "monitor"}


def _local() -> dict[str, dict]:
    return {f.stem: yaml.safe_load(f.read_text()) for f in (ROOT / "dapr-config" / "access").glob("*.yaml")}


def _cluster() -> dict[str, dict]:
    documents = yaml.safe_load_all((ROOT / "k8s" / "base" / "dapr" / "configurations.yaml").read_text())
    return {d["metadata"]["name"]: d for d in documents if d and d["kind"] == "Configuration"}


def test_every_app_has_a_policy_that_denies_by_default_and_names_only_platform_apps() -> None:
    local = _local()
    assert set(local) == APPS
    for app, config in local.items():
        access = config["spec"]["accessControl"]
        assert access["defaultAction"] == "deny", app
        for policy in access["policies"]:
            assert policy["appId"] in APPS - {app}, (app, policy["appId"])
            assert policy["namespace"] == "default" and policy["trustDomain"] == access["trustDomain"]
        # A layer holds only the access list: everything else comes from dapr-config/config.yaml.
        assert set(config["spec"]) == {"accessControl"}


def test_the_cluster_holds_the_same_policies() -> None:
    local, cluster = _local(), _cluster()
    for app, config in local.items():
        expected = yaml.safe_load(
            yaml.safe_dump(config["spec"]["accessControl"]).replace("namespace: default", "namespace: genai")
        )
        assert cluster[app]["spec"]["accessControl"] == expected, app


def test_no_operation_is_shadowed_by_a_shorter_one() -> None:
    """Dapr matches an operation name as a path prefix: the first name along a path that has a
    policy answers (dapr/dapr pkg/config/acl_trie.go, Trie.Search), so with `/v1/models` [POST]
    listed, `/v1/models/**` [GET] is never reached and a GET below /v1/models is refused."""
    for app, config in _local().items():
        for policy in config["spec"]["accessControl"]["policies"]:
            names = [op["name"] for op in policy.get("operations", [])]
            for name in names:
                shadowing = [n for n in names if n != name and "*" not in n and name.startswith(n + "/")]
                assert not shadowing, (app, policy["appId"], name, shadowing)


def test_inference_may_read_the_registry_but_never_promote() -> None:
    (inference,) = [p for p in _local()["registry"]["spec"]["accessControl"]["policies"] if p["appId"] == "inference"]
    assert inference["defaultAction"] == "deny"
    assert inference["operations"] == [{"name": "/v1/models/**", "httpVerb": ["GET"], "action": "allow"}]


def test_make_up_gives_each_sidecar_the_shared_config_its_policy_and_mtls(tmp_path: Path) -> None:
    """scripts/sidecar_configs.py: the run file the dapr CLI gets from `make up`, one Configuration per app."""
    run_file, configs = tmp_path / "run.yaml", tmp_path / "configs"
    script = ROOT / "scripts" / "sidecar_configs.py"
    keys = tmp_path / "resources" / "gateway-keys.yaml"
    subprocess.run([sys.executable, script, ROOT / "dapr.yaml", "./profile", run_file, configs, keys], check=True)
    source = yaml.safe_load((ROOT / "dapr.yaml").read_text())
    run = yaml.safe_load(run_file.read_text())
    # No Configuration in a resources path: daprd would restart in-process on every change there.
    assert run["common"]["resourcesPaths"] == ["./profile", "./dapr-config/resiliency", str(keys.parent)]
    assert not list((ROOT / "dapr-config" / "resiliency").glob("config*.yaml"))
    component = yaml.safe_load(keys.read_text())
    assert (component["metadata"]["name"], component["scopes"]) == ("gateway-keys", ["gateway"])
    base = yaml.safe_load((ROOT / "dapr-config" / "config.yaml").read_text())["spec"]
    local = _local()
    for app, original in zip(run["apps"], source["apps"], strict=True):
        if app["appID"] == "gateway":  # reads its keys from its own store, which api_keys.py reloads
            assert app.pop("env")["SECRET_STORE"] == "gateway-keys"
        assert {k: v for k, v in app.items() if k != "configFilePath"} == original
        spec = yaml.safe_load(Path(app["configFilePath"]).read_text())["spec"]
        # mtls.enabled is what makes the dapr CLI start daprd with --enable-mtls and a sentry address.
        assert spec.pop("mtls") == {"enabled": True}
        policy = local[app["appID"]]["spec"] if app["appID"] in local else {}
        assert spec == {**base, **policy}, app["appID"]
