"""The guard's answers: verdicts of its input and output rails, and steps of checked streams.

The guard's routes declare these as response models; the gateway's `GuardClient` parses the
answers with them (and sends its stream steps as `GuardStreamSteps`). Text offsets (`start`,
`end`) count Python characters (code points) of the text checked; scores are in [0, 1], a
rail failing when its score reaches its threshold.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

# The most text one field of a guard request may hold (characters).
MAX_TEXT = 1_000_000
# The most stream steps one batch may carry (`GuardStreamSteps`).
MAX_STREAM_STEPS = 256


class RailFinding(BaseModel):
    """One thing a rail found: its kind (e.g. `EMAIL`), where it is in the text, how sure the rail is."""

    kind: str
    start: int
    end: int
    score: float
    detail: str = ""
    limit: str | None = Field(None, description="The policy setting the text is over (`length.max_tokens`).")
    limit_value: int | None = None


class RailResult(BaseModel):
    """One rail's verdict on one text: pass or fail, the action its policy takes on a failure."""

    rail: str
    verdict: Literal["pass", "fail"]
    action: str = Field(description="What the policy does on a failure: block, redact or log.")
    score: float
    threshold: float
    findings: list[RailFinding] = Field(default_factory=list)


class GuardVerdict(BaseModel):
    """The chain's verdict on one text: allowed or not, and the text that may go on (redacted)."""

    direction: Literal["input", "output"]
    allowed: bool
    blocked_by: list[str] = Field(default_factory=list, description="The rails that blocked the text.")
    redacted: bool = False
    text: str
    rails: list[RailResult] = Field(default_factory=list)


class CheckedMessage(GuardVerdict):
    """The verdict on one chat message, by its index in the request's `messages`."""

    index: int


class CheckedVariable(GuardVerdict):
    """The verdict on one string of a prompt's variables, by its dotted path (`topic`, `items.0`)."""

    variable: str


class InputVerdict(BaseModel):
    """The verdict on a chat request's messages and prompt variables: both as the model may see
    them (redacted), and the verdict on each text that was checked (every message of every role
    with text; every string of the variables)."""

    direction: Literal["input"] = "input"
    allowed: bool
    blocked_by: list[str] = Field(default_factory=list)
    redacted: bool = False
    messages: list[dict[str, Any]] = Field(
        description="OpenAI chat messages, every field kept; a checked message's content is its text, "
        "content parts joined."
    )
    checked: list[CheckedMessage] = Field(default_factory=list)
    variables: dict[str, Any] | None = Field(None, description="The prompt variables sent, redacted; null if none.")
    checked_variables: list[CheckedVariable] = Field(default_factory=list)


class GuardStreamStep(BaseModel):
    """One step of a checked stream: what the client may see now, and the tail held back because
    an output rail could still judge it differently once more text comes (guard.streaming).

    The caller sends `pending` back with the next chunk. `blocked` ends the stream: nothing more
    is released, and `blocked_by` names the rails.
    """

    released: str
    pending: str
    blocked: bool = False
    blocked_by: list[str] = Field(default_factory=list)
    rails: list[RailResult] = Field(default_factory=list, description="The rails that failed on `released`.")
    after_space: GuardStreamStep | None = Field(
        None,
        description="The step a next chunk of one space (' ') would make, when it releases text no rail "
        "found anything in: apply it to a next chunk that begins with a space, then send the chunk's rest "
        "with its `pending` (guard.streaming.after_space). Only in answers of the batch route.",
    )


class GuardStreamStepRequest(BaseModel):
    """One step of a checked stream as its caller asks for it: `pending` from the previous
    answer, the text that arrived since (`chunk`), and `final` once the model's stream ended."""

    model_config = ConfigDict(extra="forbid")

    pending: str = Field("", max_length=MAX_TEXT, description="`pending` from the previous answer.")
    chunk: str = Field("", max_length=MAX_TEXT)
    final: StrictBool = Field(False, description="The stream has ended: check and release everything.")
    request_id: str | None = Field(None, max_length=200)


class GuardStreamSteps(BaseModel):
    """One step of each of several streams in one call (`POST /v1/guard/output/stream/batch`),
    answered as `GuardStreamStepResults` in the same order: what a caller relaying many streams
    sends instead of a call per stream (gateway.stages.GuardClient)."""

    model_config = ConfigDict(extra="forbid")

    steps: list[GuardStreamStepRequest] = Field(
        min_length=1,
        max_length=MAX_STREAM_STEPS,
        description=f"At most {MAX_STREAM_STEPS} steps, holding at most {MAX_TEXT} characters of text in all.",
    )


class GuardStreamStepResults(BaseModel):
    """Each stream's step, in the order of the request's `steps`."""

    steps: list[GuardStreamStep]
