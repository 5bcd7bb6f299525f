"""The overlays against a real API server with Dapr's real sentry, sidecar injector and operator.

Server-side dry-runs of every overlay with strict field validation, then a real
`kubectl apply -k k8s/overlays/local`: rollouts, daprd injected as each app asked, the operator's
`<app>-dapr` Services, Dapr's CRD schemas refusing a broken Component, Pod Security refusing root.
kwok stands in for kubelets, so nothing runs the containers: this proves manifests, admission,
injection and reconcilers, not traffic (tests/containers runs the images).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator

import pytest
from kube import APPS, K8S, OVERLAYS, Cluster

from harness import wait_until

# The Secrets k8s/README.md tells a user to create (values random here too).
SECRETS = {
    "dapr-api-token": "token",
    "app-api-token": "token",
    "gateway-api-keys": "gateway-api-keys",
    "inference-api-key": "inference-api-key",
    "redis-password": "redis-password",
}


@pytest.fixture(scope="module")
def local(cluster: Cluster) -> Iterator[Cluster]:
    """overlays/local applied for real, every workload rolled out."""
    cluster.kubectl("apply", "-f", str(K8S / "base" / "namespace.yaml"))
    for name, key in SECRETS.items():
        manifest = cluster.kubectl(
            "-n", "genai", "create", "secret", "generic", name, f"--from-literal={key}={secrets.token_hex(24)}",
            "--dry-run=client", "-o", "json",
        ).stdout  # fmt: skip
        cluster.kubectl("apply", "-f", "-", input=manifest)
    cluster.kubectl("apply", "-k", str(K8S / "overlays" / "local"))
    for workload in [f"deployment/{app}" for app in APPS] + ["statefulset/redis"]:
        cluster.kubectl("-n", "genai", "rollout", "status", workload, "--timeout=120s", timeout=150)
    yield cluster


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_server_side_dry_run_with_strict_validation(cluster: Cluster, overlay: str) -> None:
    # Namespaced objects need their namespace to exist, even in a dry run.
    cluster.kubectl("apply", "-f", str(K8S / "base" / "namespace.yaml"))
    result = cluster.kubectl(
        "apply", "-k", str(K8S / overlay), "--server-side", "--dry-run=server", "--validate=strict",
        "--field-manager=tests", check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "(server dry run)" in result.stdout


BROKER_PROFILES = sorted(p.name for p in (K8S / "components").iterdir() if p.name != "gpu")


@pytest.mark.parametrize("broker_profile", BROKER_PROFILES)
def test_each_broker_profile_passes_dry_run_with_strict_validation(
    cluster: Cluster, broker_profile: str, tmp_path
) -> None:
    """The base with each broker-and-store component in place of the overlays' Redis: Dapr's CRD
    schemas accept its Components (the overlays above only ever render components/redis)."""
    cluster.kubectl("apply", "-f", str(K8S / "base" / "namespace.yaml"))
    # kustomize takes only relative paths to other kustomizations.
    base, component = (os.path.relpath(K8S / path, tmp_path) for path in ("base", f"components/{broker_profile}"))
    (tmp_path / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: genai\n"
        f"resources:\n  - {base}\ncomponents:\n  - {component}\n"
    )
    result = cluster.kubectl(
        "apply", "-k", str(tmp_path), "--server-side", "--dry-run=server", "--validate=strict",
        "--field-manager=tests", check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "component.dapr.io/pubsub serverside-applied (server dry run)" in result.stdout
    assert "component.dapr.io/statestore serverside-applied (server dry run)" in result.stdout


def test_strict_validation_refuses_an_unknown_field(cluster: Cluster) -> None:
    """The dry run above can fail: a misspelt field is an error, not a silently dropped key."""
    cluster.kubectl("apply", "-f", str(K8S / "base" / "namespace.yaml"))
    typo = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "typo", "namespace": "genai"},
        "dataa": {"a": "b"},
    }
    result = cluster.kubectl(
        "apply", "--server-side", "--dry-run=server", "--validate=strict", "-f", "-",
        input=json.dumps(typo), check=False,
    )  # fmt: skip
    assert result.returncode != 0 and ".dataa: field not declared in schema" in result.stderr


def pods_of(cluster: Cluster, app: str) -> list[dict]:
    return cluster.get_json("pods", "-n", "genai", "-l", f"app.kubernetes.io/name={app}")["items"]


def arg(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


@pytest.mark.parametrize("app", APPS)
def test_every_pod_runs_with_daprd_injected_as_annotated(local: Cluster, app: str) -> None:
    (pod,) = pods_of(local, app)
    notes = pod["metadata"]["annotations"]
    containers = {c["name"]: c for c in pod["spec"]["containers"]}
    assert set(containers) == {app, "daprd"}
    assert pod["status"]["phase"] == "Running"
    assert all(s["ready"] for s in pod["status"]["containerStatuses"])

    daprd = containers["daprd"]
    args = daprd["args"]
    assert arg(args, "--mode") == "kubernetes"
    assert arg(args, "--app-id") == app
    assert arg(args, "--app-port") == notes["dapr.io/app-port"] == str(containers[app]["ports"][0]["containerPort"])
    assert arg(args, "--config") == app
    assert arg(args, "--dapr-listen-addresses") == "127.0.0.1"
    assert arg(args, "--app-health-check-path") == "/healthz"
    # mTLS comes from the control plane's daprsystem Configuration.
    assert "--enable-mtls" in args and "--log-as-json" in args
    env = {v["name"]: v for v in daprd["env"]}
    assert env["DAPR_API_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "dapr-api-token", "key": "token"}
    assert env["APP_API_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "app-api-token", "key": "token"}
    assert daprd["resources"]["limits"]["memory"] == notes["dapr.io/sidecar-memory-limit"]
    security = daprd["securityContext"]
    assert security["runAsNonRoot"] is True and security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"] and security["seccompProfile"]["type"] == "RuntimeDefault"
    # The injector tells the app where its sidecar listens.
    app_env = {v["name"]: v.get("value") for v in containers[app]["env"]}
    assert app_env["DAPR_HTTP_PORT"] == arg(args, "--dapr-http-port")
    assert app_env["DAPR_GRPC_PORT"] == arg(args, "--dapr-grpc-port")


def test_registry_sidecar_mounts_the_artifacts_volume(local: Cluster) -> None:
    (pod,) = pods_of(local, "registry")
    daprd = next(c for c in pod["spec"]["containers"] if c["name"] == "daprd")
    mounts = {m["name"]: m for m in daprd["volumeMounts"]}
    assert mounts["artifacts"]["mountPath"] == "/var/lib/genai/artifacts"
    assert not mounts["artifacts"].get("readOnly", False)
    claim = local.get_json("pvc", "registry-artifacts", "-n", "genai")
    assert claim["status"]["phase"] == "Bound"


def test_operator_creates_each_apps_dapr_service(local: Cluster) -> None:
    def services() -> set[str]:
        found = {s["metadata"]["name"] for s in local.get_json("services", "-n", "genai")["items"]}
        return {f"{app}-dapr" for app in APPS} <= found and found

    found = wait_until(services, what="the operator's <app>-dapr Services", timeout=60, interval=0.5)
    gateway = local.get_json("service", "gateway-dapr", "-n", "genai")
    assert gateway["spec"]["selector"] == {"app.kubernetes.io/name": "gateway"}
    assert {p["name"] for p in gateway["spec"]["ports"]} >= {"dapr-http", "dapr-grpc", "dapr-internal"}
    assert "redis-dapr" not in found


def test_dapr_resources_are_accepted(local: Cluster) -> None:
    def names(kind: str) -> set[str]:
        return {o["metadata"]["name"] for o in local.get_json(kind, "-n", "genai")["items"]}

    assert names("components.dapr.io") == {"pubsub", "statestore", "secretstore", "blobstore", "llm", "inbox-sweep"}
    assert names("configurations.dapr.io") == set(APPS)
    assert names("resiliencies.dapr.io") == {"platform", "features"}
    assert len(names("subscriptions.dapr.io")) == 3


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda spec: spec.pop("version"), "spec.version: Required value"),
        (lambda spec: spec.update(metadata="redis:6379"), "spec.metadata: Invalid value"),
    ],
    ids=["no version", "metadata not a list"],
)
def test_a_broken_component_is_refused_with_the_schema_message(local: Cluster, change, message: str) -> None:
    component = {
        "apiVersion": "dapr.io/v1alpha1",
        "kind": "Component",
        "metadata": {"name": "broken", "namespace": "genai"},
        "spec": {"type": "state.redis", "version": "v1", "metadata": [{"name": "redisHost", "value": "redis:6379"}]},
    }
    change(component["spec"])
    result = local.kubectl("apply", "-f", "-", input=json.dumps(component), check=False)
    assert result.returncode != 0
    assert message in result.stderr
    assert local.kubectl("get", "component", "broken", "-n", "genai", check=False).returncode != 0


def test_pod_security_refuses_a_root_pod(local: Cluster) -> None:
    """The namespace's "restricted" label is enforced, so the injected pods above passed it."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "root", "namespace": "genai"},
        "spec": {"containers": [{"name": "root", "image": "debian:13", "securityContext": {"runAsUser": 0}}]},
    }
    result = local.kubectl("apply", "-f", "-", input=json.dumps(pod), check=False)
    assert result.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in result.stderr
