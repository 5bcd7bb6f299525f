"""The training service's pure pieces: JSONL checks, label masking, hyperparameter bounds,
base model references, the progress protocol, the data order of a resumed run and the
workflow's gate."""

from __future__ import annotations

import json
import math

import pytest
from pydantic import ValidationError

from training.datasets import InvalidDataset, examples_from_chunks, parse_chat_jsonl, snapshot_id, split_held_out
from training.examples import IGNORE, assistant_spans, pad_batch, tokenize_example
from training.models import Hyperparameters, NewJob, parse_base_model
from training.progress import decode_records, encode_record
from training.supervisor import event_from_record, worker_argv
from training.worker import batch_indices, learning_rate_factor, total_steps
from training.workflow import Gate, PipelineRequest, gate_verdict


def line(*turns: tuple[str, str]) -> str:
    return json.dumps({"messages": [{"role": r, "content": c} for r, c in turns]})


GOOD = line(("user", "hi"), ("assistant", "hello"))


# --- JSONL validation ---------------------------------------------------------------------------


def test_a_valid_file_parses_and_its_snapshot_id_is_stable() -> None:
    data = f"{GOOD}\n{line(('system', 's'), ('user', 'q'), ('assistant', 'a'))}\n".encode()
    dataset = parse_chat_jsonl(data)
    assert len(dataset.examples) == 2
    assert dataset.snapshot_id == parse_chat_jsonl(data.rstrip(b"\n")).snapshot_id
    assert dataset.snapshot_id.startswith("sha256:") and len(dataset.snapshot_id) == 7 + 64
    assert snapshot_id(dataset.examples[:1]) != dataset.snapshot_id


@pytest.mark.parametrize(
    ("data", "line_number", "words"),
    [
        (b"", 1, "no examples"),
        (f"{GOOD}\n\n{GOOD}\n".encode(), 2, "empty"),
        (f"{GOOD}\n{{oops\n".encode(), 2, "not valid JSON"),
        (b"[1, 2]\n", 1, "not a JSON object"),
        (b'{"prompt": "x"}\n', 1, '"messages"'),
        (f"{GOOD}\n{line(('user', 'q'))}\n".encode(), 2, "no assistant turn"),
        (line(("user", "q"), ("robot", "a")).encode(), 1, "role 'robot'"),
        (line(("user", "q"), ("assistant", "  ")).encode(), 1, "no text content"),
        (line(("assistant", "a"), ("user", "q")).encode(), 1, "starts with the assistant"),
        (b"\xff\xfe\n", 1, "UTF-8"),
    ],
)
def test_a_bad_line_is_named(data: bytes, line_number: int, words: str) -> None:
    with pytest.raises(InvalidDataset) as caught:
        parse_chat_jsonl(data)
    first = caught.value.problems[0]
    assert first.line == line_number
    assert words in first.message


def test_every_bad_line_is_counted_but_only_ten_reported() -> None:
    with pytest.raises(InvalidDataset) as caught:
        parse_chat_jsonl(b"{\n" * 25)
    assert caught.value.total == 25 and len(caught.value.problems) == 10


def test_held_out_examples_are_left_out_of_training() -> None:
    examples = [[{"role": "user", "content": str(i)}] for i in range(16)]
    train, held = split_held_out(examples)
    assert len(held) == 2 and len(train) == 14
    assert not any(h in train for h in held)
    assert split_held_out(examples[:3]) == (examples[:3], [])


# --- chat template and label masking ------------------------------------------------------------


def render(messages, add_generation_prompt: bool) -> str:
    """A ChatML-like template: a default system turn, then `<role>content</>` per message."""
    text = "<system>default</>" if not messages or messages[0]["role"] != "system" else ""
    text += "".join(f"<{m['role']}>{m['content']}</>" for m in messages)
    return text + ("<assistant>" if add_generation_prompt else "")


def encode(text: str):
    """One token per character: ids are code points, offsets are positions."""
    return [ord(c) for c in text], [(i, i + 1) for i in range(len(text))]


def test_only_assistant_replies_and_their_end_markers_are_labelled() -> None:
    messages = [
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "q2"},
        {"role": "assistant", "content": "a2"},
    ]
    example = tokenize_example(messages, render, encode, max_length=1000)
    assert example is not None
    learnt = "".join(
        chr(t) if label != IGNORE else "|" for t, label in zip(example.input_ids, example.labels, strict=True)
    )
    assert [part for part in learnt.split("|") if part] == ["a1</>", "a2</>"]
    assert example.labels.count(IGNORE) == len(example.labels) - example.trained_tokens


def test_a_cut_that_leaves_no_reply_drops_the_example() -> None:
    messages = [{"role": "user", "content": "a long question"}, {"role": "assistant", "content": "a"}]
    assert tokenize_example(messages, render, encode, max_length=10) is None
    kept = tokenize_example(messages, render, encode, max_length=len(render(messages, False)) - 2)
    assert kept is not None and kept.trained_tokens == 1 + 1  # "a" and "<" of the end marker survive


def test_a_template_that_rewrites_history_is_refused() -> None:
    def unstable(messages, add_generation_prompt: bool) -> str:
        return f"[{len(messages)}]" + render(messages, add_generation_prompt)

    with pytest.raises(ValueError, match="prefix"):
        assistant_spans([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], unstable)


def test_padding_never_counts_in_the_loss() -> None:
    a = tokenize_example([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], render, encode, 99)
    b = tokenize_example(
        [{"role": "user", "content": "qq"}, {"role": "assistant", "content": "bb"}], render, encode, 99
    )
    assert a is not None and b is not None
    ids, mask, labels = pad_batch([a, b], pad_id=0)
    assert len(ids[0]) == len(ids[1]) == len(b.input_ids)
    assert ids[0][len(a.input_ids) :] == [0] * 2 and mask[0][-2:] == [0, 0] and labels[0][-2:] == [IGNORE] * 2


# --- hyperparameters and job requests -----------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        {"learning_rate": 0},
        {"learning_rate": -1e-4},
        {"learning_rate": 1.5},
        {"n_epochs": 0},
        {"n_epochs": 101},
        {"batch_size": 1025},
        {"batch_size": 0},
        {"max_steps": -1},
        {"lora_rank": 0},
        {"lora_alpha": 0},
        {"max_seq_length": 8},
        {"checkpoint_every": 0},
        {"lr": 0.1},
    ],
)
def test_absurd_hyperparameters_are_refused(values: dict) -> None:
    with pytest.raises(ValidationError):
        Hyperparameters(**values)


def test_job_requests_check_method_names_and_aliases() -> None:
    job = NewJob(model="smollm2-135m-instruct", training_file="file-1")
    assert job.method.type == "lora" and job.nproc_per_node == 1
    for bad in (
        {"method": {"type": "dpo"}},
        {"nproc_per_node": 0},
        {"promote_to": "Prod!"},
        {"output_model": "A"},
        {"training_collection": "docs"},  # two sources of examples
        {"training_file": None},  # none
    ):
        with pytest.raises(ValidationError):
            NewJob(**{"model": "m", "training_file": "f", **bad})


def test_base_model_references() -> None:
    assert parse_base_model("smollm2-135m-instruct").packaged
    # Its registry copy (version 1, registered at setup) is a registry reference like any other.
    assert not parse_base_model("smollm2-135m-instruct@production").packaged
    assert parse_base_model("chat").reference is None
    assert parse_base_model("chat:3").reference == "3"
    assert parse_base_model("chat@production").reference == "production"
    for bad in ("Chat", "chat:0", "chat@Prod", ""):
        with pytest.raises(ValueError):
            parse_base_model(bad)


# --- the run's schedule and data order ----------------------------------------------------------


def test_steps_batches_and_learning_rate() -> None:
    hp = Hyperparameters(n_epochs=3, batch_size=4, max_steps=0, warmup_steps=2, seed=7)
    assert total_steps(10, hp) == 9
    assert total_steps(10, hp.model_copy(update={"max_steps": 5})) == 5
    epoch = [i for step in range(3) for i in batch_indices(step, 10, hp)]
    assert sorted(epoch) == list(range(10))  # an epoch sees every example once
    assert batch_indices(4, 10, hp) == batch_indices(4, 10, hp)  # a resumed run sees the same batch
    assert [learning_rate_factor(s, 10, 2) for s in (0, 1, 2)] == [0.5, 1.0, 1.0]
    assert learning_rate_factor(9, 10, 2) == pytest.approx(1 / 8)


# --- the progress protocol ----------------------------------------------------------------------


def test_progress_records_round_trip_and_torn_lines_wait() -> None:
    data = encode_record("step", step=1, loss=2.5) + encode_record("checkpoint", step=1) + b'{"type": "st'
    records, used = decode_records(data)
    assert [r["type"] for r in records] == ["step", "checkpoint"]
    assert used == data.rfind(b"\n") + 1
    garbage, _ = decode_records(b'{"type": "nope"}\nnot json\n' + encode_record("completed", output_dir="x"))
    assert [r["type"] for r in garbage] == ["completed"]
    with pytest.raises(ValueError):
        encode_record("bogus")


def test_progress_records_become_job_events() -> None:
    step = {"type": "step", "time": 1.0, "step": 3, "total_steps": 6, "loss": 1.25, "learning_rate": 0.001}
    event = event_from_record("ftjob-abc", 10, step)
    assert event is not None and event.type == "metrics" and event.data["loss"] == 1.25
    assert event.message == "Step 3/6: training loss=1.2500"
    failed = event_from_record("ftjob-abc", 11, {"type": "failed", "time": 1.0, "reason": "OOM"})
    assert failed is not None and failed.level == "error" and "OOM" in failed.message
    assert event_from_record("ftjob-abc", 12, {"type": "log", "time": 1.0}) is None


def test_several_processes_run_under_torchrun_on_loopback() -> None:
    from pathlib import Path

    assert worker_argv(Path("s.json"), 1, 0)[1:] == ["-m", "training.worker", "s.json"]
    argv = worker_argv(Path("s.json"), 2, 29500)
    assert "torch.distributed.run" in argv and "127.0.0.1:29500" in argv
    assert argv[argv.index("--nproc-per-node") + 1] == "2"


def test_collection_chunks_become_chat_examples_with_a_stable_snapshot() -> None:
    chunks = [
        {"text": "The Zephyr valve opens at 42 kPa.", "title": "Valve manual", "heading": "Pressure"},
        {"text": "  ", "title": "Valve manual"},  # nothing to learn: skipped
        {"text": "Close it by hand.", "title": "Valve manual", "heading": None},
    ]
    dataset = examples_from_chunks(chunks)
    assert dataset.examples == [
        [
            {"role": "user", "content": "What does Valve manual, Pressure say?"},
            {"role": "assistant", "content": "The Zephyr valve opens at 42 kPa."},
        ],
        [
            {"role": "user", "content": "What does Valve manual say?"},
            {"role": "assistant", "content": "Close it by hand."},
        ],
    ]
    assert examples_from_chunks(list(chunks)).snapshot_id == dataset.snapshot_id
    assert examples_from_chunks(chunks[::-1]).snapshot_id != dataset.snapshot_id


def test_the_gate_passes_only_a_model_no_worse_than_allowed_on_held_out_loss() -> None:
    better = gate_verdict({"eval_loss": 1.0, "base_eval_loss": 2.0}, Gate())
    assert better["passed"] and better["loss_ratio"] == 0.5
    assert better["eval_perplexity"] == pytest.approx(math.e)
    worse = gate_verdict({"eval_loss": 2.2, "base_eval_loss": 2.0}, Gate())
    assert not worse["passed"] and "above" in worse["reason"]
    assert gate_verdict({"eval_loss": 2.2, "base_eval_loss": 2.0}, Gate(max_loss_ratio=1.2))["passed"]
    # Nothing held out (too few examples) or a broken loss: no evidence, no pass.
    for metrics in ({"train_loss": 0.1}, {"eval_loss": float("nan"), "base_eval_loss": 2.0}):
        assert not gate_verdict(metrics, Gate())["passed"]


def test_a_workflow_request_is_checked_like_a_job_and_runs_one_that_registers_nothing() -> None:
    request = PipelineRequest(model="smollm2-135m-instruct", training_collection="manuals", promote_to="production")
    job = request.job_request(training_file="file-ftwf-1")
    assert job.training_file == "file-ftwf-1" and job.training_collection is None
    # The workflow registers after its gate, so the job itself neither registers nor promotes.
    assert job.register_output is False and job.promote_to is None
    for bad in ({"promote_to": "Prod!"}, {"training_file": "f"}, {"gate": {"max_loss_ratio": 0}}):
        with pytest.raises(ValidationError):
            PipelineRequest(**{"model": "m", "training_collection": "c", **bad})
