"""The service-invocation policies: one per app locally (dapr-config/access/), the same in the cluster.

Each app's sidecar layers dapr-config/access/<app>.yaml on the shared config (tests/harness.py,
scripts/run-platform.sh); the cluster gives each app its own Configuration
(k8s/base/dapr/configurations.yaml). They must say the same, up to the namespace the caller runs
in (`default` on this machine, `genai` in the cluster). What the sidecars do with them:
tests/integration/test_access_control.py.
"""

from __future__ import annotations

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


def test_inference_may_read_the_registry_but_never_promote() -> None:
    (inference,) = [p for p in _local()["registry"]["spec"]["accessControl"]["policies"] if p["appId"] == "inference"]
    assert inference["defaultAction"] == "deny"
    assert inference["operations"] == [{"name": "/v1/models/**", "httpVerb": ["GET"], "action": "allow"}]
