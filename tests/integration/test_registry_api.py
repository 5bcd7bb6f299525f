"""The model registry through real sidecars: versions, lineage, artifacts with sha256, aliases, events."""

import asyncio
import hashlib
import json
import struct
import uuid

import httpx

from harness import ROOT, wait_until

PART = 1024  # small parts, so a few kilobytes already make a multi-part upload


def safetensors_bytes(values: int) -> bytes:
    header = json.dumps({"w": {"dtype": "F32", "shape": [values], "data_offsets": [0, 4 * values]}}).encode()
    return struct.pack("<Q", len(header)) + header + struct.pack(f"<{values}f", *range(values))


def upload(dapr: httpx.Client, model: str, version: int, filename: str, data: bytes, sha256: str | None = None):
    base = f"/v1.0/invoke/registry/method/v1/models/{model}/versions/{version}/files/{filename}"
    parts = [data[i : i + PART] for i in range(0, len(data), PART)] or [b""]
    for index, part in enumerate(parts):
        response = dapr.put(f"{base}/parts/{index}", content=part)
        if response.status_code != 200:
            return response
    return dapr.post(
        f"{base}/complete", json={"parts": len(parts), "sha256": sha256 or hashlib.sha256(data).hexdigest()}
    )


def new_model(dapr: httpx.Client) -> str:
    name = f"smollm2-{uuid.uuid4().hex[:8]}"
    assert dapr.post("/v1.0/invoke/registry/method/v1/models", json={"name": name}).status_code == 201
    return name


def new_version(dapr: httpx.Client, name: str, **body) -> int:
    response = dapr.post(f"/v1.0/invoke/registry/method/v1/models/{name}/versions", json=body)
    assert response.status_code == 201, response.text
    return response.json()["version"]


def test_a_version_carries_lineage_and_verified_artifacts(start_app, default_broker) -> None:
    registry = start_app("registry", env={"REGISTRY_PART_SIZE": str(PART)})
    registry.wait_ready()
    weights = safetensors_bytes(1500)  # ~6 KB: seven parts
    with registry.sidecar.client() as dapr:
        name = new_model(dapr)
        base = new_version(dapr, name)
        lineage = {
            "base_model": name,
            "base_version": base,
            "training_job_id": "ftjob-1",
            "dataset_snapshot_id": "sha256:abc",
            "hyperparameters": {"lr": 0.0002},
            "metrics": {"eval_loss": 1.5},
        }
        number = new_version(dapr, name, lineage=lineage)
        assert number == base + 1

        wrong = upload(dapr, name, number, "model.safetensors", weights, sha256="0" * 64)
        assert wrong.status_code == 422 and "sha256" in wrong.json()["detail"]
        stored = upload(dapr, name, number, "model.safetensors", weights)
        assert stored.status_code == 200, stored.text
        assert stored.json()["sha256"] == hashlib.sha256(weights).hexdigest()
        assert len(stored.json()["part_sha256"]) == 6
        assert upload(dapr, name, number, "config.json", b'{"model_type": "llama"}').status_code == 200
        ready = dapr.post(f"/v1.0/invoke/registry/method/v1/models/{name}/versions/{number}/ready")
        assert ready.status_code == 200, ready.text

        version = dapr.get(f"/v1.0/invoke/registry/method/v1/models/{name}/versions/{number}").json()
        assert version["status"] == "ready"
        assert version["lineage"] == lineage
        assert sorted(version["artifacts"]) == ["config.json", "model.safetensors"]

        download = dapr.get(f"/v1.0/invoke/registry/method/v1/models/{name}/versions/{number}/files/model.safetensors")
        assert download.status_code == 200
        assert download.content == weights
        assert download.headers["x-content-sha256"] == hashlib.sha256(weights).hexdigest()

        # Ready versions are immutable.
        assert upload(dapr, name, number, "config.json", b"{}").status_code == 409


def test_unsafe_or_fake_files_are_refused_and_nothing_is_recorded(start_app, default_broker) -> None:
    registry = start_app("registry", env={"REGISTRY_PART_SIZE": str(PART)})
    registry.wait_ready()
    with registry.sidecar.client() as dapr:
        name = new_model(dapr)
        number = new_version(dapr, name)
        pickled = upload(dapr, name, number, "pytorch_model.bin", b"\x80\x04fake pickle")
        assert pickled.status_code == 415
        assert pickled.headers["content-type"] == "application/problem+json"
        assert "pickle" in pickled.json()["detail"]
        fake = upload(dapr, name, number, "model.safetensors", b"\x80\x04 this is a pickle, renamed" * 10)
        assert fake.status_code == 422
        assert dapr.post(f"/v1.0/invoke/registry/method/v1/models/{name}/versions/{number}/ready").status_code == 422
        version = dapr.get(f"/v1.0/invoke/registry/method/v1/models/{name}/versions/{number}").json()
        assert version["artifacts"] == {} and version["status"] == "pending"
        unknown = dapr.post("/v1.0/invoke/registry/method/v1/models/nope/versions", json={})
        assert unknown.status_code == 404


def test_concurrent_alias_moves_lose_no_update_and_publish_model_promoted(start_app, profile) -> None:
    # On every profile: promotion is a state write with ETags and a published event.
    monitor = start_app("monitor", profile)
    registry = start_app("registry", profile, env={"REGISTRY_PART_SIZE": str(PART)})
    registry.wait_ready()
    monitor.wait_ready()
    with registry.sidecar.client() as dapr:
        name = new_model(dapr)
        versions = []
        for _ in range(2):
            number = new_version(dapr, name)
            assert upload(dapr, name, number, "model.safetensors", safetensors_bytes(8)).status_code == 200
            assert (
                dapr.post(f"/v1.0/invoke/registry/method/v1/models/{name}/versions/{number}/ready").status_code == 200
            )
            versions.append(number)
        not_ready = new_version(dapr, name)
        refused = dapr.put(
            f"/v1.0/invoke/registry/method/v1/models/{name}/aliases/production", json={"version": not_ready}
        )
        assert refused.status_code == 409

    aliases = {f"alias-{i}": versions[i % 2] for i in range(8)}

    async def move_all() -> list[int]:
        headers = {"dapr-api-token": registry.sidecar.dapr_api_token}
        async with httpx.AsyncClient(base_url=registry.sidecar.url, headers=headers, timeout=30) as dapr:
            moves = [
                dapr.put(f"/v1.0/invoke/registry/method/v1/models/{name}/aliases/{alias}", json={"version": v})
                for alias, v in aliases.items()
            ]
            return [r.status_code for r in await asyncio.gather(*moves)]

    assert asyncio.run(move_all()) == [200] * len(aliases)
    with registry.sidecar.client() as dapr:
        model = dapr.get(f"/v1.0/invoke/registry/method/v1/models/{name}").json()
    assert model["aliases"] == aliases  # eight concurrent writers to one record, none lost

    def promoted() -> list[dict] | None:
        with monitor.sidecar.client() as dapr:
            events = dapr.get("/v1.0/invoke/monitor/method/v1/events", params={"topic": "model.promoted"}).json()
        mine = [e["data"] for e in events if e["data"].get("model") == name]
        return mine if len(mine) == len(aliases) else None

    events = wait_until(promoted, what="model.promoted events", watch=monitor.processes + registry.processes)
    assert {(e["alias"], e["version"]) for e in events} == set(aliases.items())


def test_deleting_an_alias_removes_it_and_publishes_model_promoted_with_no_version(start_app, default_broker) -> None:
    monitor = start_app("monitor")
    registry = start_app("registry", env={"REGISTRY_PART_SIZE": str(PART)})
    registry.wait_ready()
    monitor.wait_ready()
    models = "/v1.0/invoke/registry/method/v1/models"
    with registry.sidecar.client() as dapr:
        name = new_model(dapr)
        number = new_version(dapr, name)
        assert upload(dapr, name, number, "model.safetensors", safetensors_bytes(8)).status_code == 200
        assert dapr.post(f"{models}/{name}/versions/{number}/ready").status_code == 200
        for alias in ("production", "staging"):
            assert dapr.put(f"{models}/{name}/aliases/{alias}", json={"version": number}).status_code == 200

        deleted = dapr.delete(f"{models}/{name}/aliases/production")
        assert deleted.status_code == 204 and deleted.content == b""
        assert dapr.get(f"{models}/{name}").json()["aliases"] == {"staging": number}
        assert dapr.get(f"{models}/{name}/versions/production").status_code == 404
        for path, missing in ((f"{name}/aliases/production", "production"), ("no-such-model/aliases/x", "no-such")):
            refused = dapr.delete(f"{models}/{path}")
            assert refused.status_code == 404, refused.text
            assert refused.headers["content-type"] == "application/problem+json"
            assert missing in refused.json()["detail"]

    def removal() -> list[dict] | None:
        with monitor.sidecar.client() as dapr:
            events = dapr.get("/v1.0/invoke/monitor/method/v1/events", params={"topic": "model.promoted"}).json()
        mine = [e["data"] for e in events if e["data"].get("model") == name and e["data"].get("version") is None]
        return mine or None

    events = wait_until(removal, what="model.promoted for the deleted alias", watch=monitor.processes)
    assert [(e["alias"], e["previous_version"], e["files"]) for e in events] == [("production", number, [])]


def test_a_corrupted_artifact_is_never_served(start_app, default_broker) -> None:
    registry = start_app("registry", env={"REGISTRY_PART_SIZE": str(PART)})
    registry.wait_ready()
    with registry.sidecar.client() as dapr:
        name = new_model(dapr)
        number = new_version(dapr, name)
        assert upload(dapr, name, number, "model.safetensors", safetensors_bytes(600)).status_code == 200
        part = ROOT / ".data" / "artifacts" / name / str(number) / "model.safetensors.part00000"
        part.write_bytes(b"X" + part.read_bytes()[1:])
        response = dapr.get(f"/v1.0/invoke/registry/method/v1/models/{name}/versions/{number}/files/model.safetensors")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert "sha256" in response.json()["detail"]
