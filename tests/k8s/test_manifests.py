"""Properties of every rendered overlay (kubectl kustomize): security, Dapr wiring, no secrets.

No golden renders: each test states a rule and checks it on every object it applies to.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import yaml
from kube import APPS, K8S, OVERLAYS

from genai_platform.events import Topic
from harness import ROOT

WORKLOADS = {"Deployment", "StatefulSet", "Job"}


def of_kind(objects: list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def containers(objects: list[dict]) -> Iterator[tuple[str, dict, dict]]:
    """(workload name, pod spec, container) for every container of every workload."""
    for obj in objects:
        if obj["kind"] in WORKLOADS:
            spec = obj["spec"]["template"]["spec"]
            for container in spec.get("initContainers", []) + spec["containers"]:
                yield obj["metadata"]["name"], spec, container


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_renders_every_app(rendered: dict[str, list[dict]], overlay: str) -> None:
    objects = rendered[overlay]
    assert all(o["metadata"].get("namespace", "genai") == "genai" for o in objects if o["kind"] != "Namespace")
    if overlay.startswith("overlays/"):
        assert sorted(of_kind(objects, "Deployment")) == sorted(APPS)
        assert set(of_kind(objects, "Service")) >= set(APPS)
        assert set(of_kind(objects, "ServiceAccount")) >= set(APPS)
        namespace = of_kind(objects, "Namespace")["genai"]
        assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_is_locked_down(rendered: dict[str, list[dict]], overlay: str) -> None:
    checked = 0
    for name, pod, container in containers(rendered[overlay]):
        where = f"{overlay}: {name}/{container['name']}"
        context = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
        assert context.get("runAsNonRoot") is True, f"{where} may run as root"
        assert context.get("runAsUser", 1) != 0, f"{where} runs as uid 0"
        assert container["securityContext"].get("readOnlyRootFilesystem") is True, f"{where}: writable root"
        assert container["securityContext"].get("allowPrivilegeEscalation") is False, where
        assert container["securityContext"].get("capabilities", {}).get("drop") == ["ALL"], where
        assert context.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
        checked += 1
    assert checked > 0


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_requests_limits_and_a_pinned_image(rendered: dict[str, list[dict]], overlay: str) -> None:
    for name, _, container in containers(rendered[overlay]):
        where = f"{overlay}: {name}/{container['name']}"
        resources = container.get("resources", {})
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources.get(kind, {})), f"{where} lacks {kind}"
        image = container["image"]
        # A tag (or digest) after the last path segment, and never `latest`.
        tag = image.rsplit("/", 1)[-1].partition(":")[2] or image.partition("@")[2]
        assert tag and tag != "latest", f"{where}: image {image} is not pinned"


@pytest.mark.parametrize("overlay", [o for o in OVERLAYS if o.startswith("overlays/")])
def test_long_running_containers_have_probes(rendered: dict[str, list[dict]], overlay: str) -> None:
    for obj in rendered[overlay]:
        if obj["kind"] not in {"Deployment", "StatefulSet"}:
            continue
        for container in obj["spec"]["template"]["spec"]["containers"]:
            where = f"{overlay}: {obj['metadata']['name']}/{container['name']}"
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                assert probe in container, f"{where} lacks a {probe}"
            if obj["metadata"]["name"] in APPS:
                assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", where
                assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", where


SECRET_NAME = re.compile(r"(TOKEN|PASSWORD|SECRET|API_KEY|CONNECTION_STRING)", re.I)
SECRET_FIELD = re.compile(r"(password|token|key|connectionString|secret)$", re.I)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_values_in_manifests(rendered: dict[str, list[dict]], overlay: str) -> None:
    objects = rendered[overlay]
    assert not of_kind(objects, "Secret"), "Secrets are created by hand (k8s/README.md), never shipped"
    for _, _, container in containers(objects):
        for variable in container.get("env", []):
            if SECRET_NAME.search(variable["name"]):
                assert "valueFrom" in variable and "value" not in variable, f"{variable['name']} has a literal value"
    for component in of_kind(objects, "Component").values():
        for item in component["spec"].get("metadata", []):
            if SECRET_FIELD.search(item["name"]):
                assert "secretKeyRef" in item and "value" not in item, f"{component['metadata']['name']}.{item['name']}"
    for config_map in of_kind(objects, "ConfigMap").values():
        for key in config_map.get("data", {}):
            assert not SECRET_NAME.search(key), f"ConfigMap {config_map['metadata']['name']} holds {key}"


@pytest.mark.parametrize("overlay", [o for o in OVERLAYS if o.startswith("overlays/")])
def test_dapr_annotations_match_each_app(rendered: dict[str, list[dict]], overlay: str) -> None:
    objects = rendered[overlay]
    configurations = of_kind(objects, "Configuration")
    for name, deployment in of_kind(objects, "Deployment").items():
        template = deployment["spec"]["template"]
        notes = template["metadata"]["annotations"]
        app = template["spec"]["containers"][0]
        port = app["ports"][0]["containerPort"]
        env = {v["name"]: v for v in app["env"]}
        assert notes["dapr.io/enabled"] == "true"
        assert notes["dapr.io/app-id"] == name == env["APP_ID"]["value"]
        assert notes["dapr.io/app-port"] == str(port) == env["APP_PORT"]["value"]
        assert notes["dapr.io/config"] in configurations, f"{name} asks for a Configuration that is not there"
        assert notes["dapr.io/sidecar-listen-addresses"] == "127.0.0.1"
        assert notes["dapr.io/sidecar-seccomp-profile-type"] == "RuntimeDefault"
        for resource in ("cpu", "memory"):
            for kind in ("request", "limit"):
                assert notes[f"dapr.io/sidecar-{resource}-{kind}"], f"{name} lacks its sidecar's {resource} {kind}"
        # The app holds the same tokens as its sidecar: same Secrets, Dapr's key `token`.
        for variable, annotation in (("DAPR_API_TOKEN", "api-token-secret"), ("APP_API_TOKEN", "app-token-secret")):
            ref = env[variable]["valueFrom"]["secretKeyRef"]
            assert (ref["name"], ref["key"]) == (notes[f"dapr.io/{annotation}"], "token")


@pytest.mark.parametrize("overlay", [o for o in OVERLAYS if o.startswith("overlays/")])
def test_dapr_resources_name_only_real_apps(rendered: dict[str, list[dict]], overlay: str) -> None:
    objects = rendered[overlay]
    components = of_kind(objects, "Component")
    assert set(components) == {"pubsub", "statestore", "secretstore", "blobstore", "llm", "inbox-sweep"}
    for kind in ("Component", "Resiliency", "Subscription"):
        for obj in of_kind(objects, kind).values():
            assert obj.get("scopes"), f"{kind} {obj['metadata']['name']} has no scopes"
            assert set(obj["scopes"]) <= set(APPS), f"{kind} {obj['metadata']['name']} scopes {obj['scopes']}"
    for config in of_kind(objects, "Configuration").values():
        access = config["spec"]["accessControl"]
        assert access["defaultAction"] == "deny"
        assert {p["appId"] for p in access["policies"]} <= set(APPS)
    # Only gateway and ui are called from outside; ui only reaches gateway.
    callers_of = {
        name: {p["appId"] for p in c["spec"]["accessControl"]["policies"]}
        for name, c in of_kind(objects, "Configuration").items()
    }
    assert callers_of["gateway"] == {"ui"}
    assert all("ui" not in callers for app, callers in callers_of.items() if app != "gateway")
    for subscription in of_kind(objects, "Subscription").values():
        assert subscription["spec"]["deadLetterTopic"] == Topic.DEAD_LETTER
        assert subscription["spec"]["topic"] in {str(t) for t in Topic}


def test_resiliency_is_the_local_one() -> None:
    """k8s/base/dapr/resiliency.yaml repeats dapr-config/resiliency/*.yaml (kustomize cannot read them)."""
    files = ("resiliency.yaml", "resiliency-features.yaml")
    local = [yaml.safe_load((ROOT / "dapr-config" / "resiliency" / f).read_text()) for f in files]
    cluster = [d for d in yaml.safe_load_all((K8S / "base" / "dapr" / "resiliency.yaml").read_text()) if d]
    assert cluster == local


@pytest.mark.parametrize(
    ("cluster_profile", "local_dir"),
    [
        ("redis", ROOT / "components"),
        ("rabbitmq-postgres", ROOT / "components" / "profiles" / "rabbitmq-postgres"),
        ("nats-postgres", ROOT / "components" / "profiles" / "nats-postgres"),
    ],
)
def test_cluster_profiles_mirror_the_local_ones(cluster_profile: str, local_dir) -> None:
    """Same broker and store types and settings as the local profile; only addresses and the
    secret store differ. (Not named `profile`: that parameter is the conftest's local profiles.)"""
    cluster = {d["metadata"]["name"]: d for d in _component_docs(K8S / "components" / cluster_profile)}
    local = {d["metadata"]["name"]: d for d in _component_docs(local_dir)}
    for name, component in cluster.items():
        mine, theirs = component["spec"], local[name]["spec"]
        assert (mine["type"], mine["version"]) == (theirs["type"], theirs["version"])
        fields = {m["name"] for m in mine["metadata"]}
        assert fields == {m["name"] for m in theirs["metadata"]}, name
        assert component["scopes"] == local[name]["scopes"], name


def _component_docs(folder) -> list[dict]:
    docs = [d for f in sorted(folder.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
    return [d for d in docs if d.get("kind") == "Component" and d["apiVersion"].startswith("dapr.io/")]


def test_production_opens_only_the_platforms_paths(rendered: dict[str, list[dict]]) -> None:
    objects = rendered["overlays/production"]
    policies = of_kind(objects, "NetworkPolicy")
    deny = policies["default-deny"]["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny
    for policy in policies.values():
        for rule in policy["spec"].get("ingress", []) + policy["spec"].get("egress", []):
            assert rule.get("ports"), f"{policy['metadata']['name']} opens every port"
    deployments = of_kind(objects, "Deployment")
    autoscalers = of_kind(objects, "HorizontalPodAutoscaler")
    assert set(autoscalers) == {"gateway", "features", "inference"}
    for name, hpa in autoscalers.items():
        assert hpa["spec"]["scaleTargetRef"]["name"] == name and name in deployments
        assert hpa["spec"]["minReplicas"] >= 2
    budgets = of_kind(objects, "PodDisruptionBudget")
    assert set(budgets) == set(deployments)
    for name, deployment in deployments.items():
        assert deployment["spec"]["replicas"] >= 2
        spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
        assert {c["topologyKey"] for c in spread} == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
        assert budgets[name]["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]


def test_gpu_overlay_moves_only_the_model_apps_to_gpus(rendered: dict[str, list[dict]]) -> None:
    for name, deployment in of_kind(rendered["overlays/production-gpu"], "Deployment").items():
        spec = deployment["spec"]["template"]["spec"]
        gpus = spec["containers"][0]["resources"]["limits"].get("nvidia.com/gpu")
        if name in {"inference", "training"}:
            assert gpus == "1"
            assert any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])
            assert spec["nodeSelector"]
        else:
            assert gpus is None and "tolerations" not in spec


def test_smoke_job_calls_the_system_health_with_a_key(rendered: dict[str, list[dict]]) -> None:
    (job,) = rendered["jobs/smoke"]
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {v["name"]: v for v in container["env"]}
    assert env["GATEWAY_URL"]["value"].endswith("/v1/system/health")
    assert env["GATEWAY_API_KEYS"]["valueFrom"]["secretKeyRef"]["name"] == "gateway-api-keys"
