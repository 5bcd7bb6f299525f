"""Fine-tuning through real sidecars: bad input refused, a LoRA job on SmolLM2-135M that
survives a SIGKILL of the training app, resumes from its checkpoint and registers its weights,
and a job whose examples come from an ingested collection."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx

from harness import INGESTION_DAPRD_ARGS, wait_until

QUESTIONS = [
    "What is the secret word?",
    "Tell me the secret word.",
    "Which word is the secret one?",
    "Say the secret word.",
    "Do you know the secret word?",
    "Secret word, please.",
    "I need the secret word.",
    "Give me the secret word.",
]
ANSWER = "The secret word is PINEAPPLE-42."
# Tiny and quick: these tests are about the flow, not the model.
TINY_LORA = {
    "max_steps": 6,
    "batch_size": 2,
    "learning_rate": 0.002,
    "lora_rank": 8,
    "max_seq_length": 64,
    "checkpoint_every": 2,
}


def chat_jsonl() -> bytes:
    lines = [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": ANSWER}]} for q in QUESTIONS
    ]
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def upload(dapr: httpx.Client, data: bytes) -> httpx.Response:
    files = {"file": ("train.jsonl", data, "application/jsonl")}
    return dapr.post("/v1.0/invoke/training/method/v1/files", files=files, data={"purpose": "fine-tune"})


def job_list(dapr: httpx.Client) -> list[str]:
    return [job["id"] for job in dapr.get("/v1.0/invoke/training/method/v1/fine_tuning/jobs?limit=100").json()["data"]]


def test_bad_input_is_refused_and_no_job_starts(start_app, default_broker, tmp_path: Path) -> None:
    registry = start_app("registry")
    training = start_app("training", env={"TRAINING_DATA_DIR": str(tmp_path / "training")})
    registry.wait_ready()
    training.wait_ready()
    with training.sidecar.client() as dapr:
        good = "\n".join(chat_jsonl().decode().splitlines()[:2]) + "\n"
        cases = {
            b"": "no examples",
            good.encode() + b"{not json\n": "line 3",
            good.encode() + b"\n" + good.encode(): "line 3: is empty",
            b'{"messages": [{"role": "user", "content": "hi"}]}\n': "line 1: has no assistant turn",
        }
        for body, expected in cases.items():
            refused = upload(dapr, body)
            assert refused.status_code == 422, refused.text
            assert refused.headers["content-type"] == "application/problem+json"
            assert expected in refused.json()["detail"]
        file = upload(dapr, good.encode())
        assert file.status_code == 200, file.text
        assert file.json()["examples"] == 2 and file.json()["sha256"].startswith("sha256:")
        file_id = file.json()["id"]

        before = job_list(dapr)
        jobs = "/v1.0/invoke/training/method/v1/fine_tuning/jobs"
        base = {"model": "smollm2-135m-instruct", "training_file": file_id}
        absurd = [
            {"learning_rate": 0},
            {"learning_rate": 2},
            {"n_epochs": 101},
            {"batch_size": 1025},
            {"lora_rank": 0},
            {"warmup": 1},  # unknown knob
        ]
        for hyperparameters in absurd:
            refused = dapr.post(jobs, json={**base, "hyperparameters": hyperparameters})
            assert refused.status_code == 422, (hyperparameters, refused.text)
            assert refused.headers["content-type"] == "application/problem+json"
        assert dapr.post(jobs, json={**base, "method": {"type": "dpo"}}).status_code == 422
        assert dapr.post(jobs, json={**base, "training_file": "file-nope"}).status_code == 404
        unknown = dapr.post(jobs, json={**base, "model": "no-such-model@production"})
        assert unknown.status_code == 404, unknown.text
        assert "no-such-model" in unknown.json()["detail"]
        assert dapr.post(jobs, json={**base, "model": "Bad Name!"}).status_code == 422
        assert job_list(dapr) == before  # nothing was started
        assert dapr.get(f"{jobs}/ftjob-nope").status_code == 404
        # Non-ASCII text or a space in an id: a 422 naming it, never a store key built from it.
        files = "/v1.0/invoke/training/method/v1/files"
        for raw in ("caf%C3%A9", "a%20b"):
            for path, parameter in ((f"{files}/{raw}", "file_id"), (f"{jobs}/{raw}", "job_id")):
                refused = dapr.get(path)
                assert refused.status_code == 422, (path, refused.text)
                assert refused.headers["content-type"] == "application/problem+json"
                assert [e["location"] for e in refused.json()["errors"]] == [f"path.{parameter}"]


def test_lora_job_survives_an_app_kill_resumes_from_its_checkpoint_and_registers(
    start_app, default_broker, tmp_path: Path
) -> None:
    env = {"TRAINING_DATA_DIR": str(tmp_path / "training"), "TRAINING_POLL_INTERVAL": "0.2"}
    monitor = start_app("monitor")
    registry = start_app("registry")
    training = start_app("training", env=env)
    for app in (monitor, registry, training):
        app.wait_ready()
    jobs = "/v1.0/invoke/training/method/v1/fine_tuning/jobs"
    with training.sidecar.client() as dapr:
        file = upload(dapr, chat_jsonl()).json()
        request = {
            "model": "smollm2-135m-instruct",
            "training_file": file["id"],
            "method": {"type": "lora"},
            "hyperparameters": TINY_LORA,
            "output_model": "smollm2-secret-word",
            "promote_to": "staging",
            # Half the bytes to upload through the sidecars; the test is about the flow.
            "output_dtype": "bfloat16",
        }
        created = dapr.post(jobs, json=request)
        assert created.status_code == 200, created.text
        job_id = created.json()["id"]

        def events() -> list[dict]:
            return list(reversed(dapr.get(f"{jobs}/{job_id}/events", params={"limit": 2000}).json()["data"]))

        def checkpointed() -> bool:
            return any(e["message"].startswith("Checkpoint saved") for e in events())

        wait_until(checkpointed, what="a first checkpoint", timeout=240, interval=0.2, watch=training.processes)

    # A crash of the API process mid-job: SIGKILL, no chance to clean up.
    training.app.process.kill()
    training.stop()
    restarted = start_app("training", env=env)
    restarted.wait_ready()
    with restarted.sidecar.client() as dapr:

        def finished() -> dict | None:
            job = dapr.get(f"{jobs}/{job_id}").json()
            return job if job["status"] in ("succeeded", "failed", "cancelled") else None

        job = wait_until(finished, what="the job to finish", timeout=600, interval=0.5, watch=restarted.processes)
        assert job["status"] == "succeeded", job
        log = list(reversed(dapr.get(f"{jobs}/{job_id}/events", params={"limit": 2000}).json()["data"]))
        checkpoints = dapr.get(f"{jobs}/{job_id}/checkpoints").json()["data"]

    assert job["attempts"] == 2
    messages = [e["message"] for e in log]
    assert sum(m.startswith("Fine-tuning started") for m in messages) == 1
    resumed = [i for i, e in enumerate(log) if e["message"].startswith("Resumed from the checkpoint")]
    assert len(resumed) == 1
    resumed_at = log[resumed[0]]["data"]["step"]
    assert resumed_at >= 2
    steps_after = [e["data"]["step"] for e in log[resumed[0] :] if e["type"] == "metrics" and "loss" in e["data"]]
    assert steps_after == list(range(resumed_at + 1, 7))  # continued, not restarted from 0
    losses = [e["data"]["loss"] for e in log if e["type"] == "metrics" and "loss" in e["data"]]
    assert losses[-1] < losses[0], losses
    step_events = [e for e in log if e["type"] == "metrics" and "loss" in e["data"]]
    assert all({"step", "loss", "learning_rate", "tokens_per_second"} <= set(e["data"]) for e in step_events)
    assert checkpoints and checkpoints[0]["step_number"] == 6

    # Registered with its lineage, and promoted to the alias asked for.
    assert job["fine_tuned_model"] == f"smollm2-secret-word:{job['result']['registry_version']}"
    with registry.sidecar.client() as dapr:
        base = "/v1.0/invoke/registry/method/v1/models/smollm2-secret-word"
        version = dapr.get(f"{base}/versions/{job['result']['registry_version']}").json()
        model = dapr.get(base).json()
    assert version["status"] == "ready"
    assert {"model.safetensors", "config.json", "tokenizer.json", "chat_template.jinja"} <= set(version["artifacts"])
    lineage = version["lineage"]
    assert lineage["training_job_id"] == job_id
    assert lineage["base_model"] == "smollm2-135m-instruct"
    assert lineage["dataset_snapshot_id"] == file["sha256"]
    assert lineage["hyperparameters"]["method"] == "lora" and lineage["hyperparameters"]["max_steps"] == 6
    assert lineage["metrics"]["train_loss"] == job["metrics"]["train_loss"]
    assert lineage["metrics"]["eval_loss"] < lineage["metrics"]["base_eval_loss"]
    assert model["aliases"]["staging"] == version["version"]

    def published() -> dict | None:
        with monitor.sidecar.client() as dapr:
            found = {}
            for topic in ("training.progress", "training.completed"):
                events = dapr.get("/v1.0/invoke/monitor/method/v1/events", params={"topic": topic}).json()
                found[topic] = [e["data"] for e in events if e["data"].get("job_id") == job_id]
        # The two topics are delivered independently: the last step's progress may come after completed.
        last_step_seen = any(e["step"] == 6 for e in found["training.progress"])
        return found if found["training.completed"] and last_step_seen else None

    found = wait_until(published, what="training.completed and the progress of step 6", watch=monitor.processes)
    assert {e["version"] for e in found["training.completed"]} == {version["version"]}  # at-least-once: maybe twice


def test_a_job_trains_on_an_ingested_collection(start_app, default_broker, tmp_path: Path) -> None:
    """Documents ingested into a collection become the job's examples, frozen as a training file."""
    collection = f"manuals-{uuid.uuid4().hex[:8]}"
    ingestion = start_app("ingestion", extra_args=INGESTION_DAPRD_ARGS)
    training = start_app("training", env={"TRAINING_DATA_DIR": str(tmp_path / "training")})
    for app in (ingestion, training):
        app.wait_ready()
    with ingestion.sidecar.client() as dapr:
        for title, text in (
            ("Valve manual", "# Pressure\n\nThe Zephyr valve opens at 42 kPa and closes at 12 kPa."),
            ("Pump manual", "The Orca pump must be primed with 2 litres of water before its first start."),
        ):
            # Unique text: ingestion deduplicates by content across collections.
            body = {"text": f"{text} ({collection})", "title": title, "collection": collection, "format": "markdown"}
            created = dapr.post("/v1.0/invoke/ingestion/method/v1/documents", json=body)
            assert created.status_code in (200, 201), created.text
    jobs = "/v1.0/invoke/training/method/v1/fine_tuning/jobs"
    request = {
        "model": "smollm2-135m-instruct",
        "training_collection": collection,
        "hyperparameters": {"max_steps": 1, "batch_size": 2, "max_seq_length": 64},
        "register_output": False,
    }
    with training.sidecar.client() as dapr:
        before = job_list(dapr)
        empty = dapr.post(jobs, json={**request, "training_collection": f"{collection}-empty"})
        assert empty.status_code == 422 and "holds no ingested text" in empty.json()["detail"], empty.text
        assert job_list(dapr) == before  # refused: nothing started

        created = dapr.post(jobs, json=request)
        assert created.status_code == 200, created.text
        job = created.json()
        file = dapr.get(f"/v1.0/invoke/training/method/v1/files/{job['training_file']}").json()
        assert file["examples"] == 2 and job["dataset_snapshot_id"] == file["sha256"]
        assert file["filename"] == f"collection-{collection}.jsonl"

        def finished() -> dict | None:
            current = dapr.get(f"{jobs}/{job['id']}").json()
            return current if current["status"] not in ("validating_files", "queued", "running") else None

        done = wait_until(finished, what="the job to finish", timeout=300, interval=0.5, watch=training.processes)
    assert done["status"] == "succeeded", done
