"""Training files: JSONL chat examples, checked line by line, and their snapshot id."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

ROLES = frozenset({"system", "user", "assistant"})
# Enough problems to fix a file in one go without echoing a whole broken file back.
MAX_REPORTED = 10


@dataclass(frozen=True)
class LineProblem:
    """What is wrong with one line of an uploaded file (lines numbered from 1)."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass
class ChatDataset:
    """The examples of a valid file, each a list of `{"role", "content"}` messages."""

    examples: list[list[dict[str, str]]] = field(default_factory=list)

    @property
    def snapshot_id(self) -> str:
        """The examples' content id (see `snapshot_id`), recorded as a version's lineage."""
        return snapshot_id(self.examples)

    def to_jsonl(self) -> str:
        """The examples as JSON Lines, one `{"messages": [...]}` per line."""
        return "".join(json.dumps({"messages": messages}, ensure_ascii=False) + "\n" for messages in self.examples)


class InvalidDataset(ValueError):
    """The file is not a usable set of chat examples; `problems` name the lines."""

    def __init__(self, problems: list[LineProblem], total: int | None = None) -> None:
        self.problems = problems
        self.total = total if total is not None else len(problems)
        super().__init__("; ".join(str(p) for p in problems))


def snapshot_id(examples: list[list[dict[str, str]]]) -> str:
    """sha256 over the examples in a canonical form: the same records give the same id."""
    digest = hashlib.sha256()
    for messages in examples:
        digest.update(json.dumps(messages, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode())
        digest.update(b"\n")
    return f"sha256:{digest.hexdigest()}"


def _check_example(record: Any) -> tuple[list[dict[str, str]] | None, str | None]:
    if not isinstance(record, dict):
        return None, "is not a JSON object"
    messages = record.get("messages")
    if not isinstance(messages, list) or not messages:
        return None, 'has no "messages" list'
    checked: list[dict[str, str]] = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            return None, f"message {index} is not an object"
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            return None, f'message {index} has role {role!r}; use "system", "user" or "assistant"'
        if not isinstance(content, str) or not content.strip():
            return None, f"message {index} ({role}) has no text content"
        checked.append({"role": role, "content": content})
    if not any(m["role"] == "assistant" for m in checked):
        return None, "has no assistant turn to learn from"
    if checked[0]["role"] == "assistant":
        return None, "starts with the assistant; an example needs a user (or system) turn first"
    return checked, None


def parse_chat_jsonl(data: bytes) -> ChatDataset:
    """Check every line of a JSONL upload; raises InvalidDataset naming the bad lines."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidDataset([LineProblem(text_line(data, error.start), "is not UTF-8 text")]) from error
    lines = text.split("\n")
    if lines and lines[-1].strip() == "":
        lines.pop()  # the newline that ends the last record
    dataset = ChatDataset()
    problems: list[LineProblem] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            problems.append(LineProblem(number, "is empty"))
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            problems.append(LineProblem(number, f"is not valid JSON ({error.msg} at column {error.colno})"))
            continue
        messages, problem = _check_example(record)
        if problem is not None:
            problems.append(LineProblem(number, problem))
        elif messages is not None:
            dataset.examples.append(messages)
    if problems:
        raise InvalidDataset(problems[:MAX_REPORTED], total=len(problems))
    if not dataset.examples:
        raise InvalidDataset([LineProblem(1, "the file holds no examples")])
    return dataset


def text_line(data: bytes, offset: int) -> int:
    """The 1-based line number of a byte offset."""
    return data.count(b"\n", 0, offset) + 1


def split_held_out(
    examples: list[list[dict[str, str]]], every: int = 8
) -> tuple[list[list[dict[str, str]]], list[list[dict[str, str]]]]:
    """Keep every `every`-th example out of training for evaluation (none when there are fewer than 4)."""
    if len(examples) < 4:
        return examples, []
    held = {i for i in range(len(examples)) if i % every == every - 1} or {len(examples) - 1}
    return [e for i, e in enumerate(examples) if i not in held], [examples[i] for i in sorted(held)]


def examples_from_chunks(chunks: list[dict[str, Any]]) -> ChatDataset:
    """Chat examples from ingested chunks: asked about its document (and heading), the model answers with the chunk.

    This teaches a model a collection's facts in its own chat format; chunks are taken in the
    order given (documents oldest first, then chunk order), so the same collection gives the
    same snapshot id.
    """
    dataset = ChatDataset()
    for chunk in chunks:
        text = str(chunk.get("text") or "").strip()
        if not text:
            continue
        title = str(chunk.get("title") or "this document")
        heading = chunk.get("heading")
        about = f"{title}, {heading}" if heading and heading != title else title
        dataset.examples.append(
            [
                {"role": "user", "content": f"What does {about} say?"},
                {"role": "assistant", "content": text},
            ]
        )
    return dataset
