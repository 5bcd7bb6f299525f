"""The fine-tune-and-promote Dapr Workflow through real sidecars, placement and scheduler:
refused input starts nothing, a failing gate registers nothing, and a SIGKILL of the training
app mid-training loses nothing: the workflow goes on and promotes exactly one new version."""

from __future__ import annotations

import secrets
from pathlib import Path

import httpx
import pytest
from test_training_jobs import QUESTIONS, TINY_LORA, chat_jsonl, job_list, upload

from harness import wait_until

WORKFLOWS = "/v1.0/invoke/training/method/v1/fine_tuning/workflows"
JOBS = "/v1.0/invoke/training/method/v1/fine_tuning/jobs"
MODELS = "/v1.0/invoke/registry/method/v1/models"


@pytest.fixture
def stack(start_app, default_broker, control_plane, tmp_path: Path):
    env = {
        "TRAINING_DATA_DIR": str(tmp_path / "training"),
        "TRAINING_POLL_INTERVAL": "0.2",
        # Short, so a lost "job finished" event costs the test seconds, not minutes.
        "TRAINING_WORKFLOW_POLL": "3",
    }
    registry = start_app("registry")
    training = start_app("training", env=env, extra_args=control_plane.daprd_args)
    for app in (registry, training):
        app.wait_ready()
    return registry, training


def finished(dapr: httpx.Client, instance: str) -> dict | None:
    state = dapr.get(f"{WORKFLOWS}/{instance}").json()
    return state if state["status"] in ("completed", "failed", "terminated") else None


def test_refused_requests_start_nothing_and_a_failing_gate_registers_nothing(stack) -> None:
    _, training = stack
    output = f"wf-gate-{secrets.token_hex(4)}"
    with training.sidecar.client() as dapr:
        file = upload(dapr, chat_jsonl()).json()
        good = {"model": "smollm2-135m-instruct", "training_file": file["id"], "output_model": output}
        before = job_list(dapr)
        refusals = [
            ({"model": "no-such-model@production"}, 404),
            ({"training_file": "file-missing"}, 404),
            ({"training_collection": "docs"}, 422),  # two sources of examples
            ({"hyperparameters": {"learning_rate": 5}}, 422),
            ({"hyperparameters": {"n_epochs": 0}}, 422),
            ({"gate": {"max_loss_ratio": 0}}, 422),
            ({"promote_to": "Not An Alias"}, 422),
        ]
        for change, status in refusals:
            response = dapr.post(WORKFLOWS, json={**good, **change})
            assert response.status_code == status, (change, response.text)
            assert response.headers["content-type"].startswith("application/problem+json")
            assert "Traceback" not in response.text
        assert job_list(dapr) == before
        # A workflow that does not exist: daprd answers 404 ERR_INSTANCE_ID_NOT_FOUND (was a 500).
        missing = dapr.get(f"{WORKFLOWS}/wf-missing-{secrets.token_hex(4)}")
        assert missing.status_code == 404, missing.text
        assert missing.headers["content-type"].startswith("application/problem+json")

        # A gate no fine-tuning can pass: held-out loss must fall to 1% of the base model's.
        strict = {**good, "hyperparameters": {**TINY_LORA, "max_steps": 2}, "gate": {"max_loss_ratio": 0.01}}
        started = dapr.post(WORKFLOWS, json=strict)
        assert started.status_code == 202, started.text
        instance = started.json()["id"]
        state = wait_until(
            lambda: finished(dapr, instance), what="the workflow", timeout=400, interval=1, watch=training.processes
        )
        assert state["status"] == "completed", state
        outcome = state["outcome"]
        assert outcome["status"] == "rejected", outcome
        assert outcome["evaluation"]["passed"] is False
        assert outcome["evaluation"]["loss_ratio"] > 0.01
        job = dapr.get(f"{JOBS}/{outcome['job_id']}").json()
        assert job["status"] == "succeeded" and job["fine_tuned_model"] is None
        assert dapr.get(f"{MODELS}/{output}").status_code == 404  # nothing registered


def test_workflow_survives_a_kill_of_the_training_app_and_promotes_one_version(stack) -> None:
    registry, training = stack
    output = f"wf-secret-word-{secrets.token_hex(4)}"
    with training.sidecar.client() as dapr:
        file = upload(dapr, chat_jsonl()).json()
        request = {
            "model": "smollm2-135m-instruct",
            "training_file": file["id"],
            "method": {"type": "lora"},
            "hyperparameters": TINY_LORA,
            "output_model": output,
            "output_dtype": "bfloat16",
            "promote_to": "production",
            "gate": {"max_loss_ratio": 1.0},
        }
        started = dapr.post(WORKFLOWS, json=request)
        assert started.status_code == 202, started.text
        instance, job_id = started.json()["id"], started.json()["job_id"]

        def checkpointed() -> bool:
            job = dapr.get(f"{JOBS}/{job_id}")
            return job.status_code == 200 and job.json()["step"] >= 2

        wait_until(checkpointed, what="training under way", timeout=300, interval=0.2, watch=training.processes)

    # Mid-training, the app hosting both the job and the workflow dies without warning.
    training.crash_and_restart_app()
    training.wait_ready()

    with training.sidecar.client() as dapr:
        state = wait_until(
            lambda: finished(dapr, instance), what="the workflow", timeout=600, interval=1, watch=training.processes
        )
        job = dapr.get(f"{JOBS}/{job_id}").json()
        workflow_jobs = [j for j in dapr.get(JOBS, params={"limit": 100}).json()["data"] if j["id"] == job_id]
    assert state["status"] == "completed", state
    outcome = state["outcome"]
    assert outcome["status"] == "promoted", outcome
    assert outcome["evaluation"]["passed"] is True
    assert outcome["evaluation"]["eval_loss"] < outcome["evaluation"]["base_eval_loss"]
    assert outcome["dataset_snapshot_id"] == file["sha256"]
    # One job, trained across the crash (resumed, not restarted), registered once.
    assert len(workflow_jobs) == 1 and job["attempts"] == 2
    assert job["metadata"]["workflow"] == instance

    with registry.sidecar.client() as dapr:
        versions = dapr.get(f"{MODELS}/{output}/versions").json()
        model = dapr.get(f"{MODELS}/{output}").json()
    assert [v["version"] for v in versions] == [outcome["version"]] == [1]
    lineage = versions[0]["lineage"]
    assert lineage["training_job_id"] == job_id
    assert lineage["dataset_snapshot_id"] == file["sha256"]
    assert lineage["base_model"] == "smollm2-135m-instruct"
    # Dapr's Redis state store writes JSON numbers with six decimals (jsoniter's ConfigFastest,
    # components-contrib state/redis/redis.go), so the stored ratio is the outcome's, rounded.
    assert lineage["metrics"]["loss_ratio"] == pytest.approx(outcome["evaluation"]["loss_ratio"], abs=1e-6)
    assert model["aliases"] == {"production": 1}


def test_a_promoted_fine_tune_is_served_by_inference_from_the_registry(
    start_app, default_broker, control_plane, tmp_path: Path
) -> None:
    """The whole life cycle: the base model registered at first start (version 1), inference
    serving it from the registry, a workflow fine-tuning that version and moving the alias
    inference follows, and inference answering the trained question the trained way."""
    from genai_models.files import packaged_folder  # noqa: PLC0415 (converts with torch on a cold cache)
    from inference.settings import InferenceSettings  # noqa: PLC0415

    cache = InferenceSettings.model_fields["model_cache_dir"].default
    registry = start_app("registry", env={"REGISTRY_SEED_DIR": str(packaged_folder(cache))})
    registry.wait_ready()  # ready once the base model is registered
    # An alias of this test's own, so no other user of the shared store sees its promotion.
    alias = f"t{secrets.token_hex(4)}"
    with registry.sidecar.client() as dapr:
        base = dapr.get(f"{MODELS}/smollm2-135m-instruct/versions/production").json()
        assert base["version"] == 1 and base["status"] == "ready"
        assert {"model.safetensors", "config.json", "tokenizer.json"} <= set(base["artifacts"])
        moved = dapr.put(f"{MODELS}/smollm2-135m-instruct/aliases/{alias}", json={"version": 1})
        assert moved.status_code == 200, moved.text

    inference = start_app("inference", env={"INFERENCE_MODEL": f"registry:smollm2-135m-instruct@{alias}"})
    training = start_app(
        "training",
        env={"TRAINING_DATA_DIR": str(tmp_path / "training"), "TRAINING_WORKFLOW_POLL": "3"},
        extra_args=control_plane.daprd_args,
    )
    inference.wait_ready(timeout=300)
    training.wait_ready()

    def ask() -> tuple[str, str]:
        """The greedy answer to a trained question, and the version serving now (the answer's or a newer one)."""
        with inference.sidecar.client() as dapr:
            body = {"model": "SmolLM2-135M-Instruct", "messages": [{"role": "user", "content": QUESTIONS[0]}]}
            answer = dapr.post(
                "/v1.0/invoke/inference/method/v1/chat/completions",
                json={**body, "temperature": 0, "max_tokens": 16},
                timeout=120,
            ).json()
            served = dapr.get("/v1.0/invoke/inference/method/v1/models").json()["data"][0]["version"]
        return answer["choices"][0]["message"]["content"], served

    before, served = ask()
    assert served == "1" and "PINEAPPLE" not in before

    with training.sidecar.client() as dapr:
        file = upload(dapr, chat_jsonl()).json()
        request = {
            "model": "smollm2-135m-instruct:1",
            "training_file": file["id"],
            "hyperparameters": {**TINY_LORA, "max_steps": 12, "checkpoint_every": 50, "learning_rate": 0.005},
            "output_model": "smollm2-135m-instruct",
            # float32: rounding the merged weights to bfloat16 erases most of a small LoRA update.
            "output_dtype": "float32",
            "promote_to": alias,
        }
        started = dapr.post(WORKFLOWS, json=request)
        assert started.status_code == 202, started.text
        instance = started.json()["id"]
        state = wait_until(
            lambda: finished(dapr, instance), what="the workflow", timeout=600, interval=1, watch=training.processes
        )
    outcome = state["outcome"]
    assert outcome["status"] == "promoted", state
    with registry.sidecar.client() as dapr:
        version = dapr.get(f"{MODELS}/smollm2-135m-instruct/versions/{outcome['version']}").json()
    assert version["lineage"]["base_model"] == "smollm2-135m-instruct" and version["lineage"]["base_version"] == 1

    # model.promoted reaches inference, which fetches the new version and swaps to it.
    wait_until(
        lambda: ask()[1] == str(outcome["version"]),
        what="inference to serve the promoted version",
        timeout=300,
        interval=1,
        watch=inference.processes,
    )
    after, served = ask()  # asked again: the answer above may predate the swap
    assert served == str(outcome["version"])
    assert "PINEAPPLE-42" in after and "PINEAPPLE" not in before, (before, after)
