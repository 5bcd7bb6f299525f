"""Plain functions that shape the platform's answers for pages, and pages' forms for the platform.

No HTTP here: the routes in `pages.py` call these, and unit tests call them directly.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from typing import Any

# The variable types the prompt editor offers (JSON Schema's scalar types).
VARIABLE_TYPES = ("string", "integer", "number", "boolean")
EDITOR_VARIABLE_ROWS = 4


class FormError(ValueError):
    """A form field the platform would refuse: the message says which field and what it takes."""


def answer_length(raw: str, limit: int) -> int | None:
    """The chat form's "Longest answer" as the request's `max_tokens`: None when left empty.

    Raises `FormError` naming the field and its range for anything but a whole number from 1 to
    `limit` (the gateway's and inference's own limit): refused when asked, with the reason,
    instead of an answer that fails after it started.
    """
    text = raw.strip()
    if not text:
        return None
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= limit:
        raise FormError(f"Longest answer must be a whole number of tokens from 1 to {limit:,}; it was {text[:20]!r}.")
    return int(text)


def parse_server_timing(header: str | None) -> list[tuple[str, float]]:
    """`Server-Timing` (W3C Server Timing) as (stage, milliseconds) pairs, in the header's order."""
    stages = []
    for entry in (header or "").split(","):
        name, *params = [part.strip() for part in entry.split(";")]
        duration = next((p[4:] for p in params if p.startswith("dur=")), None)
        if name and duration is not None:
            try:
                stages.append((name, float(duration)))
            except ValueError:
                continue
    return stages


def events_by_topic(events: list[dict[str, Any]], per_topic: int = 5) -> dict[str, list[dict[str, Any]]]:
    """The newest `per_topic` events of each topic (events come newest first), topics sorted."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        bucket = grouped.setdefault(str(event.get("topic") or "?"), [])
        if len(bucket) < per_topic:
            bucket.append(event)
    return dict(sorted(grouped.items()))


def loss_series(events: list[dict[str, Any]]) -> dict[str, list[list[float]]]:
    """Training and held-out loss by step, from a job's events (newest first, as the API lists them)."""
    train: dict[int, float] = {}
    held_out: dict[int, float] = {}
    for event in events:
        data = event.get("data") or {}
        step = data.get("step")
        if not isinstance(step, int):
            continue
        if isinstance(data.get("loss"), int | float):
            train[step] = float(data["loss"])
        if isinstance(data.get("eval_loss"), int | float) and not data.get("base"):
            held_out[step] = float(data["eval_loss"])
    return {
        "train": [[s, train[s]] for s in sorted(train)],
        "eval": [[s, held_out[s]] for s in sorted(held_out)],
    }


# --- prompts ------------------------------------------------------------------------------------


def prompt_text(version: Mapping[str, Any]) -> str:
    """A version as lines to compare: its template or messages, then its variables and config."""
    lines: list[str] = []
    if version.get("template") is not None:
        lines += str(version["template"]).splitlines()
    for message in version.get("messages") or []:
        lines.append(f"[{message.get('role')}]")
        lines += str(message.get("content") or "").splitlines()
    lines.append("--- variables")
    lines += json.dumps(version.get("variables") or {}, indent=2, sort_keys=True).splitlines()
    lines.append("--- config")
    lines += json.dumps(version.get("config") or {}, indent=2, sort_keys=True).splitlines()
    return "\n".join(lines)


def side_by_side(left: str, right: str) -> list[dict[str, Any]]:
    """Rows of a side-by-side diff: `{kind: equal|replace|delete|insert, left, right}` (None = no line)."""
    a, b = left.splitlines(), right.splitlines()
    rows: list[dict[str, Any]] = []
    for kind, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        olds, news = a[i1:i2], b[j1:j2]
        for index in range(max(len(olds), len(news))):
            rows.append(
                {
                    "kind": kind,
                    "left": olds[index] if index < len(olds) else None,
                    "right": news[index] if index < len(news) else None,
                }
            )
    return rows


def editor_fields(version: Mapping[str, Any]) -> dict[str, Any]:
    """What the editor shows for a version: system and user templates, and typed variable rows."""
    messages = version.get("messages") or []
    system = next((m["content"] for m in messages if m.get("role") == "system"), "")
    user = next((m["content"] for m in messages if m.get("role") == "user"), version.get("template") or "")
    schema = version.get("variables") or {}
    required = set(schema.get("required") or [])
    rows = [
        {"name": name, "type": spec.get("type", "string"), "required": name in required}
        for name, spec in (schema.get("properties") or {}).items()
    ]
    rows += [{"name": "", "type": "string", "required": False}] * max(0, EDITOR_VARIABLE_ROWS - len(rows))
    return {"system": system, "user": user, "variables": rows}


def prompt_draft(form: Mapping[str, Any]) -> dict[str, Any]:
    """A prompts-API version draft from the editor's form (chat type: optional system + user)."""
    messages = []
    if str(form.get("system") or "").strip():
        messages.append({"role": "system", "content": str(form.get("system"))})
    messages.append({"role": "user", "content": str(form.get("user") or "")})
    properties: dict[str, Any] = {}
    required = []
    for index in range(EDITOR_VARIABLE_ROWS):
        name = str(form.get(f"var_name_{index}") or "").strip()
        if not name:
            continue
        kind = str(form.get(f"var_type_{index}") or "string")
        properties[name] = {"type": kind if kind in VARIABLE_TYPES else "string"}
        if form.get(f"var_required_{index}"):
            required.append(name)
    variables: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        variables["required"] = required
    return {
        "type": "chat",
        "messages": messages,
        "variables": variables,
        "commit_message": str(form.get("commit_message") or ""),
    }


def variable_fields(version: Mapping[str, Any]) -> list[dict[str, Any]]:
    schema = version.get("variables") or {}
    required = set(schema.get("required") or [])
    return [
        {"name": name, "type": spec.get("type", "string"), "required": name in required}
        for name, spec in (schema.get("properties") or {}).items()
    ]


def typed_variables(form: Mapping[str, Any]) -> dict[str, Any]:
    """The playground's `var:<name>:<type>` fields as typed values; an unparsable number stays text,
    so the prompts service names the variable that is wrong."""
    values: dict[str, Any] = {}
    for field, raw in form.items():
        if not field.startswith("var:") or not isinstance(raw, str):
            continue
        _, name, kind = field.split(":", 2)
        if raw == "" and kind != "boolean":
            continue
        value: Any = raw
        try:
            if kind == "integer":
                value = int(raw)
            elif kind == "number":
                value = float(raw)
            elif kind == "boolean":
                value = raw in ("true", "on", "yes", "1")
        except ValueError:
            value = raw
        values[name] = value
    return values


def prompt_preview(rendered: Mapping[str, Any]) -> str:
    """A rendered prompt as one text: its messages' contents, or its text."""
    if rendered.get("messages"):
        return "\n\n".join(str(m.get("content") or "") for m in rendered["messages"])
    return str(rendered.get("text") or "")


# --- fine-tuning --------------------------------------------------------------------------------


def job_request(form: Mapping[str, Any]) -> dict[str, Any]:
    """A fine-tuning job (or workflow) request from the page's form; the training app checks it."""
    body: dict[str, Any] = {"model": str(form.get("model") or "smollm2-135m-instruct")}
    source = str(form.get("training_file") or "")
    if source.startswith("collection:"):
        body["training_collection"] = source.removeprefix("collection:")
    elif source:
        body["training_file"] = source
    hyperparameters: dict[str, Any] = {}
    for name, kind in (
        ("max_steps", int),
        ("n_epochs", int),
        ("batch_size", int),
        ("learning_rate", float),
        ("lora_rank", int),
        ("max_seq_length", int),
        ("checkpoint_every", int),
    ):
        raw = str(form.get(name) or "").strip()
        if raw:
            try:
                hyperparameters[name] = kind(raw)
            except ValueError:
                hyperparameters[name] = raw  # the training app names the field in its 422
    body["hyperparameters"] = hyperparameters
    body["method"] = {"type": str(form.get("method") or "lora")}
    for name in ("output_model", "promote_to", "suffix", "output_dtype"):
        if str(form.get(name) or "").strip():
            body[name] = str(form.get(name)).strip()
    if form.get("kind") == "workflow":
        ratio = str(form.get("max_loss_ratio") or "").strip()
        if ratio:
            body["gate"] = {"max_loss_ratio": float(ratio) if ratio.replace(".", "", 1).isdigit() else ratio}
    return body
