"""OpenAI's chat and text completion requests, as this platform serves them: one contract for the
gateway (which validates every body before anything else) and inference (which serves it).

Every field of OpenAI's request types (the `openai` package's `CompletionCreateParams` of
`openai.types.chat` and `openai.types`) is in exactly one of three sets:

- honoured: a model field below that changes the answer as OpenAI documents;
- accepted, no effect (`ACCEPTED_NO_OP`): metadata or hints whose absence of effect cannot change
  the answer a client expects (`user`, `metadata`, ...), each with its reason;
- refused (`REFUSED_CHAT`, `REFUSED_COMPLETION`): the platform cannot honour it, so any value but
  the neutral one (`n: 1`, `tools: []`, `logprobs: false`, ...) answers 400 naming the field,
  never a 200 that pretends.

A field in none of these sets (a typo, another vendor's extension) is refused with 400 too, as
OpenAI itself answers "Unrecognized request argument supplied" (400).

Types are strict: JSON `true` is no integer, `"yes"` no boolean, `1e23` no seed; floats are
finite. A wrong type is a 422 naming the field (`body.top_p`), as every route of the platform
answers; an unsupported field is a 400 with OpenAI's `error` object, whose `param` names it.

Roles: OpenAI's five (system, developer, user, assistant, tool). A role is matched without
regard to ASCII case and normalised to lower case (`User` -> `user`), so code that reads
`message.role` (the input rails check each role's text) sees exactly one spelling; anything
else, the empty role included, is a 422.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from genai_platform.errors import DomainError

# OpenAI documents `seed` as a 64-bit integer; torch's generator takes any of them.
SEED_MIN, SEED_MAX = -(2**63), 2**63 - 1
# OpenAI's limit on `stop` sequences.
MAX_STOP_SEQUENCES = 4
# `logit_bias`: token id (decimal, as OpenAI's JSON keys are strings) -> a bias in [-100, 100]
# added to that token's logit before sampling (-100 bans it, 100 all but forces it).
MAX_LOGIT_BIASES = 1024
# The most tokens one answer may ask for (`max_tokens`, chat's `max_completion_tokens`). One figure
# for every service on the way: inference's INFERENCE_MAX_TOKENS, the gateway's GATEWAY_MAX_TOKENS
# and the ui's UI_MAX_TOKENS (its "Longest answer" field) default to it, so a value the ui or the
# gateway lets through is never refused further on (a new-user trial: the ui took 4096, inference
# refused over 2048, and the answer failed after a 202).
MAX_COMPLETION_TOKENS = 2048
# OpenAI's default `max_tokens` for a legacy text completion (/v1/completions API reference), as
# inference serves it.
COMPLETIONS_DEFAULT_MAX_TOKENS = 16
TokenId = Annotated[StrictStr, Field(pattern=r"^[0-9]{1,9}$")]
LogitBias = Annotated[dict[TokenId, Annotated[StrictInt, Field(ge=-100, le=100)]], Field(max_length=MAX_LOGIT_BIASES)]

Role = Literal["system", "developer", "user", "assistant", "tool"]
ROLES: tuple[str, ...] = Role.__args__  # type: ignore[attr-defined]


def _finite(low: float, high: float, *, low_open: bool = False) -> Any:
    """A strict, finite JSON number in [low, high] (or (low, high] with `low_open`)."""
    bound = {"gt": low} if low_open else {"ge": low}
    return Annotated[float, Field(strict=True, allow_inf_nan=False, le=high, **bound)]


# --- messages ------------------------------------------------------------------------------------


class TextPart(BaseModel):
    """One part of a message's content: `{"type": "text", "text": ...}`.

    Other part types (`image_url`, `input_audio`, `file`, ...) are accepted by this model and
    refused by `unsupported_fields` with 400: no model served here reads them.
    """

    model_config = ConfigDict(extra="allow")

    type: StrictStr
    text: StrictStr | None = None

    @model_validator(mode="after")
    def _text_parts_carry_text(self) -> TextPart:
        if self.type == "text" and self.text is None:
            raise ValueError("a text part needs `text`, a string")
        return self


class ChatMessage(BaseModel):
    """One chat turn: a known role (normalised to lower case) and its content, a string or a list
    of text parts. Every role but `assistant` needs content; an assistant turn may be null only
    when it carried tool calls, which are refused here."""

    model_config = ConfigDict(extra="allow")

    role: Role
    content: StrictStr | list[TextPart] | None = Field(None, validate_default=True)
    name: StrictStr | None = Field(None, description="Accepted, not read: the chat template has no participant names.")
    tool_call_id: StrictStr | None = Field(None, description="The call a `tool` turn answers (kept for the record).")

    @field_validator("role", mode="before")
    @classmethod
    def _lower_case_role(cls, role: Any) -> Any:
        # ASCII only: str.lower() would also fold look-alikes (U+0130) into a role name.
        if isinstance(role, str) and role.isascii():
            return role.lower()
        return role

    @field_validator("content")
    @classmethod
    def _content_is_given(cls, content: Any, info: ValidationInfo) -> Any:
        role = info.data.get("role")
        if content is None and role not in (None, "assistant"):
            raise ValueError(f"a `{role}` message needs `content`: a string or a list of text parts")
        return content

    @model_validator(mode="after")
    def _assistant_says_or_calls(self) -> ChatMessage:
        calls = {k: v for k, v in (self.model_extra or {}).items() if k in ("tool_calls", "function_call") and v}
        if self.content is None and not calls:
            # A null assistant content only stands beside its tool calls (which are refused, 400).
            raise ValueError("an `assistant` message needs `content` or `tool_calls`")
        return self

    def text(self) -> str:
        """The content as one string: the text parts joined with nothing between them."""
        if isinstance(self.content, list):
            return "".join(part.text or "" for part in self.content if part.type == "text")
        return self.content or ""


class StreamOptions(BaseModel):
    """With `include_usage`, a stream ends with a chunk holding the token usage; with
    `continuous_usage_stats` as well (vLLM's extension), every chunk holds the usage so far."""

    model_config = ConfigDict(extra="forbid")

    include_usage: StrictBool = False
    continuous_usage_stats: StrictBool = Field(
        False,
        description="With include_usage: every chunk carries `usage` as of that chunk (prompt tokens, "
        "completion tokens generated so far), as vLLM's OpenAI server does.",
    )
    include_obfuscation: StrictBool | None = Field(
        None, description="Accepted, no effect: chunks carry no obfuscation padding here."
    )


# --- the fields that are not served --------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """Why a field is refused, the values that ask for nothing (accepted), and a value that is refused."""

    reason: str
    neutral: tuple[Any, ...] = ()
    example: Any = True


def _is_neutral(value: Any, neutral: tuple[Any, ...]) -> bool:
    # `type(...) is`: `true == 1` in Python, yet `n: true` is no neutral `n`.
    return value is None or any(type(value) is type(v) and value == v for v in neutral)


_TOOLS = "Tool and function calling is not served: the model was not trained to call tools."
_LOGPROBS = "Log probabilities are not returned by this server."
_PENALTY = "Presence and frequency penalties are not applied by this server's sampler."
_SHARED_REFUSED: dict[str, Refusal] = {
    "n": Refusal("Only one choice per request is served.", (1,), 2),
    "presence_penalty": Refusal(_PENALTY, (0, 0.0), 0.5),
    "frequency_penalty": Refusal(_PENALTY, (0, 0.0), 0.5),
}
REFUSED_CHAT: dict[str, Refusal] = {
    **_SHARED_REFUSED,
    "logprobs": Refusal(_LOGPROBS, (False,), True),
    "top_logprobs": Refusal(_LOGPROBS, (), 2),
    "tools": Refusal(_TOOLS, ([],), [{"type": "function", "function": {"name": "f", "parameters": {}}}]),
    "tool_choice": Refusal(_TOOLS, ("none", "auto"), "required"),
    "functions": Refusal(_TOOLS, ([],), [{"name": "f", "parameters": {}}]),
    "function_call": Refusal(_TOOLS, ("none", "auto"), {"name": "f"}),
    "response_format": Refusal(
        "Only `{type: text}` is served: JSON output needs constrained decoding, which this server does not do.",
        ({"type": "text"},),
        {"type": "json_object"},
    ),
    "audio": Refusal("Audio output is not served: the model writes text only.", (), {"voice": "alloy"}),
    "modalities": Refusal("Only the `text` modality is served.", (["text"],), ["text", "audio"]),
    "prediction": Refusal("Predicted outputs are not served.", (), {"type": "content", "content": "x"}),
    "reasoning_effort": Refusal("The model does not reason in hidden steps.", (), "low"),
    "verbosity": Refusal("The model's verbosity cannot be set.", (), "low"),
    "web_search_options": Refusal("Web search is not served.", (), {}),
    "store": Refusal("Completions are not stored for later retrieval.", (False,), True),
    "service_tier": Refusal("One service tier is served.", ("auto", "default"), "priority"),
    "moderation": Refusal("Moderation is the guard's input and output rails, not a request field.", (), {}),
    "prompt_cache_options": Refusal("Prompt caching is not served.", (), {}),
}
REFUSED_COMPLETION: dict[str, Refusal] = {
    **_SHARED_REFUSED,
    "logprobs": Refusal(_LOGPROBS, (), 2),
    "suffix": Refusal("Insertion (text after the completion) is not served: the model only continues.", ("",), "x"),
    "best_of": Refusal("Only one candidate per request is generated.", (1,), 2),
}
# Fields taken and given no effect, with the reason that cannot change the answer a client expects.
ACCEPTED_NO_OP: dict[str, str] = {
    "user": "An end-user id for abuse monitoring; the API key identifies the caller here.",
    "safety_identifier": "An end-user id for abuse monitoring; the API key identifies the caller here.",
    "metadata": "Tags for stored completions; completions are not stored (`store: true` is refused).",
    "prompt_cache_key": "A cache-routing hint: an optimisation that cannot change the answer.",
    "prompt_cache_retention": "A cache-lifetime hint: an optimisation that cannot change the answer.",
    "parallel_tool_calls": "Only matters with `tools`, which are refused.",
}
# What the platform adds to OpenAI's fields (served by inference).
EXTENSIONS: dict[str, str] = {
    "ignore_eos": "vLLM's: generate `max_tokens` tokens even past the end-of-sequence token.",
}


# --- errors ----------------------------------------------------------------------------------------

# The `code` of an error answer that names none itself, by status: RFC 6750's `insufficient_scope`
# for a key without the route's scope (the gateway's WWW-Authenticate says the same), and OpenAI's
# own codes for the rest (its "Error codes" guide).
_CODES_BY_STATUS = {401: "invalid_api_key", 403: "insufficient_scope", 429: "rate_limit_exceeded"}
# Where a validation error's field is (`body.messages.0.role`): OpenAI's `param` names it from the
# body, query or path down (`messages[0].role`).
_REQUEST_PARTS = frozenset({"body", "query", "path", "header", "cookie"})
# The names pydantic puts in a location for the member of a union a value was tried as
# (`messages.0.content.str`, `...content.list[function-after[...]]`): no field of the request.
_UNION_MEMBERS = frozenset({"str", "int", "float", "bool", "list", "dict", "tuple", "set", "bytes", "none"})
# At most this many field errors are spelled out in the message (all are in the problem's `errors`).
_MESSAGE_ERRORS = 3


def error_object(
    message: str, type_: str = "invalid_request_error", *, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """OpenAI's error object, `{"message", "type", "param", "code"}` (API reference, "Error codes"):
    the `error` member of an error answer, from which OpenAI's SDKs read `type`, `param` and `code`.
    `type_` is `invalid_request_error` (4xx), `rate_limit_error`, `insufficient_quota` or
    `server_error` (5xx)."""
    return {"message": message, "type": type_, "param": param, "code": code}


def openai_param(location: str) -> str:
    """A validation error's location (`body.messages.0.role`) as OpenAI's `param` (`messages[0].role`);
    empty for the body (or query, path...) as a whole, which names no parameter. The names of union
    members pydantic adds (`content.str`, `stop.list[str]`) are left out: a new-user trial's
    `param` read `messages[0].content.str`."""
    parts = location.split(".")
    if parts[0] in _REQUEST_PARTS:
        parts = parts[1:]
    parts = [part for part in parts if part not in _UNION_MEMBERS and "[" not in part and "(" not in part]
    param = ""
    for part in parts:
        param += f"[{part}]" if part.isdigit() else f".{part}" if param else part
    return param


def error_of_problem(problem: dict[str, Any]) -> dict[str, Any]:
    """The error object (`error_object`) for a problem+json body: the body's own `error` when it
    has one; else `message` from `detail` (with up to three of its field `errors`), `param` from
    its `param` or first field error, `code` from its `code` or its status (401 `invalid_api_key`,
    403 `insufficient_scope`, 429 `rate_limit_exceeded`), `type` from its status."""
    own = problem.get("error")
    if isinstance(own, dict):
        return own
    status = problem.get("status") if isinstance(problem.get("status"), int) else 500
    message = str(problem.get("detail") or problem.get("title") or "")
    param = problem.get("param") if isinstance(problem.get("param"), str) else None
    errors = [e for e in problem.get("errors") or () if isinstance(e, dict)]
    if errors:
        fields = [(openai_param(str(e.get("location", ""))), str(e.get("message", ""))) for e in errors]
        param = param or fields[0][0] or None
        # An error the detail already says is not said twice (the prompts service's detail quotes its one).
        untold = [(where, what) for where, what in fields if what not in message][:_MESSAGE_ERRORS]
        if untold:
            spelled = "; ".join(f"{where}: {what}" if where else what for where, what in untold)
            message = f"{message.rstrip('.')}: {spelled}."
    code = problem.get("code") if isinstance(problem.get("code"), str) else _CODES_BY_STATUS.get(status)
    type_ = "server_error" if status >= 500 else "rate_limit_error" if status == 429 else "invalid_request_error"
    return error_object(message, type_, param=param, code=code)


class UnsupportedField(DomainError):
    """A request field the platform does not serve, or does not know (400, OpenAI's `error` with `param`)."""

    status = 400

    def __init__(self, param: str, reason: str, *, message: str | None = None) -> None:
        message = message or f"`{param}` is not supported: {reason}"
        super().__init__(message, param=param, error=error_object(message, param=param))
        self.param = param


# --- requests ------------------------------------------------------------------------------------


class TokensOverLimit(DomainError):
    """A request that asks for more answer tokens than the server gives one answer (400 with OpenAI's
    `error`, `param` naming the field sent: `max_tokens` or `max_completion_tokens`), with `limit`
    `max_tokens` and `limit_value`, as inference answers it (`inference.openai_api`)."""

    status = 400

    def __init__(self, param: str, requested: int, limit_value: int) -> None:
        detail = f"{param} is {requested}, over the limit of {limit_value}."
        error = error_object(detail, param=param)
        super().__init__(detail, param=param, error=error, limit="max_tokens", limit_value=limit_value)


class OpenAIRequest(BaseModel):
    """A request of OpenAI's API: fields beyond the declared ones land in `model_extra`, where
    `unsupported_fields` answers each refused one (unless neutral) and each unknown one."""

    model_config = ConfigDict(extra="allow")
    REFUSED: ClassVar[dict[str, Refusal]] = {}

    def unsupported_fields(self) -> list[UnsupportedField]:
        """Every refused field set to a value that asks for something, then every unknown field, in
        the order of `REFUSED` (so `tools` is named before `tool_choice`, whatever the body's order)."""
        found = []
        order = {name: i for i, name in enumerate(self.REFUSED)}
        for name, value in sorted((self.model_extra or {}).items(), key=lambda item: order.get(item[0], len(order))):
            refusal = self.REFUSED.get(name)
            if refusal is None:
                found.append(UnsupportedField(name, "Unrecognized request argument supplied."))
            elif not _is_neutral(value, refusal.neutral):
                found.append(UnsupportedField(name, refusal.reason))
        return found

    def refuse_unsupported(self) -> None:
        """Raise the first `UnsupportedField` (400), if any."""
        if found := self.unsupported_fields():
            raise found[0]


class GenerationFields(OpenAIRequest):
    """The sampling and streaming fields chat and text completions share (OpenAI's names)."""

    model: StrictStr | None = None
    max_tokens: StrictInt | None = Field(None, ge=1)
    temperature: _finite(0.0, 2.0) | None = None
    top_p: _finite(0.0, 1.0, low_open=True) | None = None
    stop: StrictStr | Annotated[list[StrictStr], Field(max_length=MAX_STOP_SEQUENCES)] | None = None
    seed: Annotated[StrictInt, Field(ge=SEED_MIN, le=SEED_MAX)] | None = None
    stream: StrictBool | None = False
    stream_options: StreamOptions | None = None
    logit_bias: LogitBias | None = None
    ignore_eos: StrictBool = Field(False, description=EXTENSIONS["ignore_eos"])
    user: StrictStr | None = Field(None, description=ACCEPTED_NO_OP["user"])

    def unsupported_fields(self) -> list[UnsupportedField]:
        """The unsupported fields (`OpenAIRequest`), and `stream_options` without `stream`, which
        OpenAI refuses too (400: "only allowed when 'stream' is enabled")."""
        found = super().unsupported_fields()
        if self.stream_options is not None and not self.stream:
            message = "`stream_options` is only allowed when `stream` is true."
            found.append(UnsupportedField("stream_options", "", message=message))
        return found

    def check_max_tokens(self, limit: int) -> None:
        """Raise `TokensOverLimit` (400 naming the field) when `max_tokens`, or chat's
        `max_completion_tokens`, asks for more than `limit` tokens (`MAX_COMPLETION_TOKENS` unless
        the service's setting says otherwise)."""
        for name in ("max_completion_tokens", "max_tokens"):
            requested = getattr(self, name, None)
            if requested is not None and requested > limit:
                raise TokensOverLimit(name, requested, limit)

    @property
    def include_usage(self) -> bool:
        """Whether a stream ends with a usage chunk."""
        return self.stream_options is not None and self.stream_options.include_usage

    @property
    def continuous_usage(self) -> bool:
        """Whether every chunk of a stream carries the usage so far (`continuous_usage_stats`)."""
        return self.include_usage and bool(self.stream_options and self.stream_options.continuous_usage_stats)

    @property
    def biases(self) -> tuple[tuple[int, int], ...]:
        """`logit_bias` as (token id, bias) pairs, in id order."""
        return tuple(sorted((int(token), bias) for token, bias in (self.logit_bias or {}).items()))

    @property
    def stops(self) -> tuple[str, ...]:
        """The stop sequences, empty ones left out."""
        stops = [self.stop] if isinstance(self.stop, str) else (self.stop or [])
        return tuple(s for s in stops if s)


class ChatCompletionRequest(GenerationFields):
    """OpenAI's chat completion request: at least one message."""

    REFUSED: ClassVar[dict[str, Refusal]] = REFUSED_CHAT

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: StrictInt | None = Field(None, ge=1)
    safety_identifier: StrictStr | None = Field(None, description=ACCEPTED_NO_OP["safety_identifier"])
    metadata: dict[StrictStr, StrictStr] | None = Field(None, description=ACCEPTED_NO_OP["metadata"])
    prompt_cache_key: StrictStr | None = Field(None, description=ACCEPTED_NO_OP["prompt_cache_key"])
    prompt_cache_retention: StrictStr | None = Field(None, description=ACCEPTED_NO_OP["prompt_cache_retention"])
    parallel_tool_calls: StrictBool | None = Field(None, description=ACCEPTED_NO_OP["parallel_tool_calls"])

    def requested_max_tokens(self) -> int | None:
        """`max_completion_tokens`, else the older `max_tokens`; None for the engine's default."""
        return self.max_completion_tokens or self.max_tokens

    def unsupported_fields(self) -> list[UnsupportedField]:
        """The request's unsupported fields, then each message's (tool calls, audio, non-text parts)."""
        found = super().unsupported_fields()
        for i, message in enumerate(self.messages):
            for name in message.model_extra or {}:
                if (message.model_extra or {})[name] is not None:
                    reason = _TOOLS if name in ("tool_calls", "function_call") else "Not a field this server reads."
                    found.append(UnsupportedField(f"messages[{i}].{name}", reason))
            for j, part in enumerate(message.content if isinstance(message.content, list) else []):
                if part.type != "text":
                    reason = f"Only text parts are served: no model here reads `{part.type}` parts."
                    found.append(UnsupportedField(f"messages[{i}].content[{j}].type", reason))
                    continue
                for name in part.model_extra or {}:
                    reason = "A text part is `type` and `text` only."
                    found.append(UnsupportedField(f"messages[{i}].content[{j}].{name}", reason))
        return found


_ONE_PROMPT = (
    "One prompt per request is served: send each prompt in its own request (concurrent requests are "
    "decoded together in one batch all the same)."
)


class CompletionRequest(GenerationFields):
    """OpenAI's (legacy) text completion request: one prompt, as text or as token ids.

    `prompt` takes OpenAI's four shapes (a string, an array of strings, an array of token ids, an
    array of token-id arrays), checked as embeddings' `input` is (`embedding_input_errors`: a 422
    at the element, `body.prompt.0.3`); more than one prompt is a 400 naming `prompt`
    (`unsupported_fields`). Token ids are the served model's own, generated from as given: inference
    refuses an id outside its vocabulary (400 naming `prompt[3]`).
    """

    REFUSED: ClassVar[dict[str, Refusal]] = REFUSED_COMPLETION

    # Not empty: a prompt of no tokens has nothing to continue (and once broke the engine's
    # batched prefill for every request in the batch).
    prompt: (
        Annotated[StrictStr, Field(min_length=1)]
        | Annotated[list[Annotated[StrictStr, Field(min_length=1)]], Field(min_length=1)]
        | Annotated[list[StrictInt], Field(min_length=1)]
        | Annotated[list[Annotated[list[StrictInt], Field(min_length=1)]], Field(min_length=1)]
    ) = Field(description="A string, an array of strings, an array of token ids or an array of token-id arrays.")
    echo: StrictBool = Field(False, description="Answer the prompt followed by its completion.")

    @field_validator("prompt", mode="before")
    @classmethod
    def _one_of_openais_shapes(cls, value: Any) -> Any:
        # Checked before the union: its own errors would name each of its four members, not the element.
        if errors := embedding_input_errors(value, "prompt"):
            raise ValidationError.from_exception_data("prompt", errors)
        return value

    @property
    def prompts(self) -> list[str] | list[list[int]]:
        """The prompts as a list, one item per choice OpenAI would answer: texts, or token-id arrays."""
        if isinstance(self.prompt, str) or isinstance(self.prompt[0], int):
            return [self.prompt]  # type: ignore[list-item]
        return self.prompt  # type: ignore[return-value]

    def unsupported_fields(self) -> list[UnsupportedField]:
        """The unsupported fields (`GenerationFields`), and more than one prompt."""
        found = super().unsupported_fields()
        if len(self.prompts) > 1:
            message = f"`prompt` holds {len(self.prompts)} prompts. {_ONE_PROMPT}"
            found.append(UnsupportedField("prompt", _ONE_PROMPT, message=message))
        return found

    def prompt_text(self) -> str | None:
        """The one prompt's text; None when it is token ids (`prompt_ids`)."""
        first = self.prompts[0]
        return first if isinstance(first, str) else None

    def prompt_ids(self) -> list[int] | None:
        """The one prompt's token ids, as given; None when it is text (`prompt_text`)."""
        first = self.prompts[0]
        return None if isinstance(first, str) else first

    def element(self, token: int) -> str:
        """The name of the one prompt's token `token` in the request as sent: `prompt[3]` for an
        array of ids, `prompt[0][3]` for an array of one token-id array."""
        whole = isinstance(self.prompt[0], int)
        return f"prompt[{token}]" if whole else f"prompt[0][{token}]"


# OpenAI's limit on one embeddings request: "any array must be 2048 dimensions or less" (API
# reference, embeddings `input`). The features app's default (FEATURES_MAX_INPUTS).
MAX_EMBEDDING_INPUTS = 2048


# A text to embed: a non-empty string of Unicode text. Its length check is the platform's one rule
# against a lone UTF-16 surrogate (`"\ud800"`: valid JSON, but no Unicode text, RFC 8259 section
# 8.2): to measure a constrained string pydantic reads it as Unicode and answers `string_unicode`,
# naming the field, as guard's `text`, search's `query` and ingestion's `text` are refused. A bare
# StrictStr takes one, and the model's tokenizer then failed with a TypeError (a 500).
EmbeddingText = Annotated[StrictStr, Field(min_length=1)]
# One input as token ids of the served model's vocabulary (checked against it by the features app).
TokenIds = Annotated[list[StrictInt], Field(min_length=1)]
_EMBEDDING_TEXT: TypeAdapter[str] = TypeAdapter(EmbeddingText)


def vocabulary_size(tokenizer_size: int, embedding_rows: int) -> int:
    """How many token ids a model reads, ids 0 to this minus one: the platform's one rule for
    token-id inputs (embeddings' `input`, a text completion's `prompt`).

    It is the smaller of the tokenizer's size (`len(tokenizer)`, added tokens included) and the
    model's embedding rows (`config.vocab_size`): a tokenizer may hold more ids than the model has
    rows (tokens added but never trained in), and an id past the rows would index past the
    embedding matrix; a model may have more rows than the tokenizer has ids (rows padded to a
    multiple of 64), and an id past the tokenizer has no text. The two sizes are given, so this
    module needs no tokenizer library.
    """
    return min(tokenizer_size, embedding_rows)


def first_unknown_token(ids: Sequence[int], vocabulary: int) -> int | None:
    """The position in `ids` of the first id outside 0 to `vocabulary - 1` (`vocabulary_size`);
    None when every id is in."""
    return next((j for j, token in enumerate(ids) if not 0 <= token < vocabulary), None)


_INPUT_SHAPES = "a string, an array of strings, an array of token ids or an array of token-id arrays"


def _input_kind(item: Any) -> str | None:
    """What one element of an `input` (or `prompt`) array is, in words; None for none of OpenAI's kinds."""
    if isinstance(item, str):
        return "a string"
    if isinstance(item, int) and not isinstance(item, bool):  # JSON `true` is no token id
        return "a token id"
    if isinstance(item, list):
        return "a token-id array"
    return None


def _input_error(where: tuple[int, ...], item: Any, message: str, kind: str = "embedding_input") -> InitErrorDetails:
    return InitErrorDetails(type=PydanticCustomError(kind, message), loc=where, input=item)


def _text_errors(text: str, where: tuple[int, ...]) -> list[InitErrorDetails]:
    try:
        _EMBEDDING_TEXT.validate_python(text)
    except ValidationError as error:
        return [
            InitErrorDetails(type=e["type"], loc=where, input=e["input"], ctx=e.get("ctx", {}))  # type: ignore[typeddict-item]
            for e in error.errors(include_url=False)
        ]
    return []


def embedding_input_errors(value: Any, field: str = "input") -> list[InitErrorDetails]:
    """What is wrong with an embeddings `input` (or a text completion's `prompt`, `field`), each
    error at the element it is about: `(1,)` for `input[1]`, `(0, 3)` for `input[0][3]`, `()` for
    `input` itself. Empty when it is one of OpenAI's four shapes: a string, an array of strings, an
    array of token ids (integers) or an array of token-id arrays, with no empty string, array or
    token array and no mix of kinds; every string is Unicode text (`EmbeddingText`: a lone
    surrogate is pydantic's `string_unicode`). Whether a token id is in the model's vocabulary is
    not checked here."""
    error_type = "embedding_input" if field == "input" else f"{field}_shape"

    def error(where: tuple[int, ...], item: Any, message: str) -> InitErrorDetails:
        return _input_error(where, item, message, error_type)

    if isinstance(value, str):
        return _text_errors(value, ())
    if not isinstance(value, list):
        return [error((), value, f"{field} must be {_INPUT_SHAPES}")]
    if not value:
        return [error((), value, f"{field} must not be an empty array")]
    kinds = [_input_kind(item) for item in value]
    first = next((i for i, kind in enumerate(kinds) if kind is not None), None)
    errors = []
    for i, (item, kind) in enumerate(zip(value, kinds, strict=True)):
        if kind is None:
            message = f"an element of {field} must be a string, a token id or a token-id array"
            errors.append(error((i,), item, message))
        elif first is not None and kind != kinds[first]:
            message = f"{field}[{i}] is {kind} and {field}[{first}] {kinds[first]}: {field} must be {_INPUT_SHAPES}"
            errors.append(error((i,), item, message + ", not a mix"))
        elif kind == "a string":
            errors.extend(_text_errors(item, (i,)))
        elif kind == "a token-id array":
            if not item:
                errors.append(error((i,), item, f"{field}[{i}] is an empty token-id array"))
            errors.extend(
                error((i, j), token, f"{field}[{i}][{j}] must be a token id (an integer)")
                for j, token in enumerate(item)
                if _input_kind(token) != "a token id"
            )
    return errors


class InputOverLimit(DomainError):
    """An embeddings `input` past a limit the server reads (400 with OpenAI's `error`, `param` `input`),
    named by `limit` (`max_inputs`: inputs per request; `max_input_tokens`: tokens per input;
    `vocab_size`: a token id outside the model's vocabulary) and `limit_value`. A count limit is a
    400, not a 413: the body may be small, and the client fixes it by sending fewer inputs, not
    fewer bytes."""

    status = 400

    def __init__(self, detail: str, *, limit: str, limit_value: int) -> None:
        error = error_object(detail, param="input")
        super().__init__(detail, param="input", error=error, limit=limit, limit_value=limit_value)


class EmbeddingsRequest(OpenAIRequest):
    """OpenAI's embeddings request. `input` is one of OpenAI's four shapes: a string, an array of
    strings, an array of token ids (one input) or an array of token-id arrays, never empty and
    never a mix (`embedding_input_errors`, a 422 naming each element: `body.input.1`,
    `body.input.0.3`). Token ids are the served model's own (its tokenizer's ids, special tokens
    included), read as they are given: the features app refuses an id outside its vocabulary.

    `dimensions` is honoured only as the model's own size: a vector cut shorter is a good
    embedding only for a model trained for it (Matryoshka), and the served one is checked by the
    features app, which answers 400 naming `dimensions` otherwise.
    """

    input: (
        EmbeddingText
        | Annotated[list[EmbeddingText], Field(min_length=1)]
        | Annotated[list[StrictInt], Field(min_length=1)]
        | Annotated[list[TokenIds], Field(min_length=1)]
    ) = Field(description="A string, an array of strings, an array of token ids or an array of token-id arrays.")
    model: StrictStr | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: StrictInt | None = Field(None, ge=1, description="The model's own size, if given.")
    user: StrictStr | None = Field(None, description=ACCEPTED_NO_OP["user"])

    @field_validator("input", mode="before")
    @classmethod
    def _one_of_openais_shapes(cls, value: Any) -> Any:
        # Checked before the union: its own errors would name each of its four members, not the element.
        if errors := embedding_input_errors(value):
            raise ValidationError.from_exception_data("input", errors)
        return value

    @property
    def token_input(self) -> bool:
        """Whether `input` is token ids (an array of them, or arrays of them) rather than text."""
        return isinstance(self.input, list) and not isinstance(self.input[0], str)

    @property
    def inputs(self) -> list[str] | list[list[int]]:
        """The inputs as a list, one item per vector answered: texts, or token-id arrays."""
        if isinstance(self.input, str) or isinstance(self.input[0], int):
            return [self.input]  # type: ignore[list-item]
        return self.input  # type: ignore[return-value]

    def element(self, index: int, token: int | None = None) -> str:
        """The name of input `index` (or of its token `token`) in the request as sent: `input`,
        `input[2]` or `input[2][7]`; a lone string or a lone token array is `input` itself."""
        whole = isinstance(self.input, str) or isinstance(self.input[0], int)
        name = "input" if whole else f"input[{index}]"
        return name if token is None else f"{name}[{token}]"

    def check_input_count(self, max_inputs: int) -> None:
        """Raise `InputOverLimit` (400 naming `input`, limit `max_inputs`) when `input` holds more
        than `max_inputs` inputs (texts or token-id arrays)."""
        if len(self.inputs) > max_inputs:
            raise InputOverLimit(
                f"input has {len(self.inputs)} items; at most {max_inputs} are read per request.",
                limit="max_inputs",
                limit_value=max_inputs,
            )


def honoured_fields(request: type[OpenAIRequest]) -> set[str]:
    """The fields of `request` that change the answer as OpenAI documents."""
    return set(request.model_fields) - set(ACCEPTED_NO_OP) - set(EXTENSIONS)


# --- the gateway's additions ---------------------------------------------------------------------


class PromptReference(BaseModel):
    """A managed prompt to render for the last user turn: its name, a label or a version, and the
    variables to fill in (their types are the prompt version's to check)."""

    model_config = ConfigDict(extra="forbid")

    name: StrictStr = Field(min_length=1)
    label: StrictStr | None = None
    version: StrictInt | None = Field(None, ge=1, le=2**31 - 1)  # the prompts service's range
    variables: dict[StrictStr, Any] = Field(default_factory=dict)


class GatewayChatRequest(ChatCompletionRequest):
    """The gateway's chat request: OpenAI's, plus `collection` (ground the answer in its documents)
    and `prompt` (a managed prompt, by name or `PromptReference`). The gateway takes both out
    before the request reaches inference."""

    collection: StrictStr | None = Field(None, min_length=1)
    prompt: StrictStr | PromptReference | None = None
