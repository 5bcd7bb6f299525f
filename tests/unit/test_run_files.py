"""dapr.yaml and tye.yaml describe the same platform: same apps, ports, commands, Dapr settings."""

from pathlib import Path

import yaml

from harness import RESILIENCY_DIR, ROOT, SERVICES


def load(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def test_dapr_yaml_runs_every_service_once() -> None:
    ids = [app["appID"] for app in load("dapr.yaml")["apps"]]
    assert len(ids) == len(set(ids))
    assert set(ids) >= SERVICES


def test_tye_yaml_matches_dapr_yaml() -> None:
    dapr_run = load("dapr.yaml")
    tye = load("tye.yaml")
    tye_services = {service["name"]: service for service in tye["services"]}
    dapr_ext = next(ext for ext in tye["extensions"] if ext["name"] == "dapr")

    assert set(tye_services) == {app["appID"] for app in dapr_run["apps"]}
    for app in dapr_run["apps"]:
        service = tye_services[app["appID"]]
        assert " ".join(app["command"]) == f"{service['executable']} {service['args']}", app["appID"]
        assert Path(app["appDirPath"]) == Path(service["workingDirectory"]), app["appID"]
        if "appPort" not in app:
            continue
        assert service["bindings"][0]["port"] == app["appPort"], app["appID"]
        sidecar = dapr_ext["services"][app["appID"]]
        assert sidecar["app-id"] == app["appID"]
        assert sidecar["http-port"] == app["daprHTTPPort"], app["appID"]
        assert sidecar["grpc-port"] == app["daprGRPCPort"], app["appID"]
        assert sidecar["metrics-port"] == app["metricsPort"], app["appID"]

    common = dapr_run["common"]
    assert Path(dapr_ext["config"]) == Path(common["configFilePath"])
    assert Path(dapr_ext["resources-path"]) == Path(common["resourcesPaths"][0])
    assert "components-path" not in dapr_ext, "components-path is deprecated: use resources-path"
    assert dapr_ext["app-health-check-path"] == common["appHealthCheckPath"]


def test_every_listener_is_loopback_and_ports_do_not_collide() -> None:
    dapr_run = load("dapr.yaml")
    assert dapr_run["common"]["apiListenAddresses"] == "127.0.0.1"
    ports = [
        app[key]
        for app in dapr_run["apps"]
        for key in ("appPort", "daprHTTPPort", "daprGRPCPort", "daprInternalGRPCPort", "metricsPort")
        if key in app
    ]
    # placement, scheduler (scripts/control-plane.sh), then sentry's gRPC and healthz ports
    control_plane = [30005, 30006, 30080, 30081, 30090, 30091, 30379, 30380, 30201, 50001, 30082]
    assert len(ports + control_plane) == len(set(ports + control_plane))
    gateway = next(app for app in dapr_run["apps"] if app["appID"] == "gateway")
    assert gateway["appPort"] == 8080


def test_no_resources_path_holds_a_configuration() -> None:
    """daprd 1.18 watches its resources paths (hot reload); a Configuration in one that differs from
    its --config (in standalone mode it always does) makes any change there restart the sidecar
    in-process, after which its /metrics answers 500. So `make up`'s and the tests' resources paths
    hold components and resiliency only, and every sidecar config file lives elsewhere."""
    folders = [ROOT / path for path in load("dapr.yaml")["common"]["resourcesPaths"]] + [RESILIENCY_DIR]
    tye_dapr = next(ext for ext in load("tye.yaml")["extensions"] if ext["name"] == "dapr")
    folders.append(ROOT / tye_dapr["resources-path"])
    for folder in folders:
        kinds = {f.name: yaml.safe_load(f.read_text()).get("kind") for f in folder.glob("*.yaml")}
        assert kinds, folder
        assert "Configuration" not in kinds.values(), (folder, kinds)
    config = ROOT / load("dapr.yaml")["common"]["configFilePath"]
    assert config.parent.resolve() not in {folder.resolve() for folder in folders}
