"""OpenAI-compatible routes: /v1/chat/completions, /v1/completions (streamed or not), /v1/models."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from genai_platform.contracts.openai import (
    COMPLETIONS_DEFAULT_MAX_TOKENS,
    ChatCompletionRequest,
    CompletionRequest,
    GenerationFields,
    error_object,
    first_unknown_token,
    vocabulary_size,
)
from genai_platform.errors import Problem, problem_responses
from genai_platform.streaming import ClosingStreamingResponse, while_connected
from inference.access import require_caller
from inference.decoding import SamplingParams
from inference.engine import Engine, Finished, Generation, LimitExceeded, QueueFull, TextDelta
from inference.model import LoadedModel
from inference.registry_source import RegistryRef
from inference.swap import ModelService, NotLoaded, start_generation

router = APIRouter(prefix="/v1", tags=["openai"], dependencies=[Depends(require_caller)])

# The request schemas are the platform's contract (genai_platform.contracts.openai), shared with
# the gateway, which validates each body against them before anything else.


def sampling(body: GenerationFields, max_tokens: int) -> SamplingParams:
    """`body`'s fields as the engine's sampling parameters (OpenAI's defaults: temperature 1, top_p 1)."""
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        seed=body.seed,
        stop=body.stops,
        ignore_eos=body.ignore_eos,
        logit_bias=body.biases,
    )


# --- answer schemas (OpenAI's shapes; what `Completion` and `list_models` build) -------------------


class Answer(BaseModel):
    """Base of the answer models: no field beyond those declared."""

    # Exactly what is sent: the unit tests validate real answers against these, so a field added
    # to one side only fails there.
    model_config = ConfigDict(extra="forbid")


class Usage(Answer):
    """Tokens of one generation: the prompt's, the generated ones and their sum."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(Answer):
    """The generated reply."""

    role: Literal["assistant"]
    content: str


class ChatChoice(Answer):
    """The one choice of a chat answer; `finish_reason` "length" when `max_tokens` cut it."""

    index: int
    message: AssistantMessage
    logprobs: None
    finish_reason: Literal["stop", "length"] | None


class CompletionAnswer(Answer):
    """What every whole answer carries: its id, creation time, model and `system_fingerprint`
    (`v<model version>`), and the token usage."""

    id: str
    created: int = Field(description="Unix time, seconds.")
    model: str
    system_fingerprint: str
    usage: Usage


class ChatCompletion(CompletionAnswer):
    """A whole chat answer (`object: chat.completion`)."""

    object: Literal["chat.completion"]
    choices: list[ChatChoice]


class TextChoice(Answer):
    """The one choice of a text completion; `finish_reason` "length" when `max_tokens` cut it."""

    index: int
    text: str
    logprobs: None
    finish_reason: Literal["stop", "length"] | None


class TextCompletion(CompletionAnswer):
    """A whole text completion (`object: text_completion`)."""

    object: Literal["text_completion"]
    choices: list[TextChoice]


class DetokenizedPrompt(Answer):
    """A token-id prompt's text, as the served model's tokenizer decodes it."""

    text: str


class ModelCard(Answer):
    """The model being served: its registered name and version (our extension of OpenAI's card)."""

    id: str
    object: Literal["model"]
    created: int = Field(description="Unix time, seconds: when this server began serving the version.")
    owned_by: str
    version: str


class ModelList(Answer):
    """OpenAI's model list: the one model being served, or none while it loads."""

    object: Literal["list"]
    data: list[ModelCard]


def _streamed_or_whole(whole: type[BaseModel], chunk: str) -> dict[int | str, dict[str, Any]]:
    """The 200 answer of a generation route: `whole` as JSON, or `stream: true`'s server-sent events."""
    events = {
        "type": "string",
        "description": f"Server-sent events `data: <{chunk} JSON>`, ending with `data: [DONE]`.",
    }
    # 400: a refused or unknown field, or a limit (`error.param` names it); 404: a model not served.
    return {200: {"model": whole, "content": {"text/event-stream": {"schema": events}}}, **problem_responses(400, 404)}


# --- routes --------------------------------------------------------------------------------------


async def get_models(request: Request) -> ModelService:
    """Dependency: the service holding the engine that serves requests."""
    return request.app.state.models


ModelsDep = Annotated[ModelService, Depends(get_models)]


@router.get(
    "/models", summary="The model version being served", response_model=None, responses={200: {"model": ModelList}}
)
async def list_models(models: ModelsDep) -> dict[str, Any]:
    engine = models.current
    return {"object": "list", "data": [] if engine is None else [_model_card(engine)]}


@router.get(
    "/models/{model}",
    summary="The served model, by any name a request may give it (OpenAI's retrieve model)",
    response_model=None,
    responses={200: {"model": ModelCard}, **problem_responses(404, 503)},
)
async def retrieve_model(model: str, models: ModelsDep) -> dict[str, Any]:
    """OpenAI's `GET /v1/models/{model}`: the card `list_models` lists, for the served model's id or
    any name a request's `model` may give (`served_names`); 404 `model_not_found` for another name,
    503 while no model is loaded."""
    _check_model(models, model)
    engine = models.current
    if engine is None:
        raise _not_serving(models)
    return _model_card(engine)


def _not_serving(models: ModelService) -> Problem:
    """The 503 while no version is served: still loading, or withdrawn (its alias was deleted)."""
    detail = f"No model version is served: {models.withdrawn}." if models.withdrawn else "The model is loading."
    return Problem(503, detail, headers={"Retry-After": "5"})


def _model_card(engine: Engine) -> dict[str, Any]:
    """`ModelCard` of the served engine."""
    return {
        "id": engine.name,
        "object": "model",
        "created": engine.created,
        "owned_by": "genai-platform",
        "version": engine.version,
    }


@router.post(
    "/chat/completions",
    summary="Chat completion, streamed as server-sent events or whole",
    response_model=None,
    responses=_streamed_or_whole(ChatCompletion, "chat.completion.chunk"),
)
async def chat_completions(body: ChatCompletionRequest, request: Request, models: ModelsDep) -> Any:
    body.refuse_unsupported()
    _check_model(models, body.model)
    messages = [{"role": m.role, "content": m.text()} for m in body.messages]
    generation = await _start(models, lambda loaded: loaded.encode_chat(messages), body, body.requested_max_tokens())
    completion = Completion("chat.completion", generation)
    if body.stream:
        return _sse(completion.chat_chunks(body.include_usage, body.continuous_usage), generation)
    text, finished = await _collect(generation, request)
    return completion.chat_response(text, finished)


@router.post(
    "/completions",
    summary="Text completion, streamed as server-sent events or whole",
    response_model=None,
    responses=_streamed_or_whole(TextCompletion, "text_completion"),
)
async def completions(body: CompletionRequest, request: Request, models: ModelsDep) -> Any:
    body.refuse_unsupported()
    _check_model(models, body.model)
    decoded: list[str] = []  # the text of a token-id prompt, for `echo` only

    def prompt_tokens(loaded: LoadedModel) -> list[int]:
        ids = body.prompt_ids()
        if ids is None:
            return loaded.encode(body.prompt_text() or "")
        check_prompt_ids(loaded, body)
        if body.echo:  # decoded by the model that serves the ids, and only when echoed
            decoded.append(decode_ids(loaded, ids))
        return ids  # generated from as given, as vLLM does: no decode/re-encode round trip

    # OpenAI's default for this legacy endpoint is 16 tokens (the gateway reserves the same).
    max_tokens = body.max_tokens or COMPLETIONS_DEFAULT_MAX_TOKENS
    generation = await _start(models, prompt_tokens, body, max_tokens)
    completion = Completion("text_completion", generation)
    # `echo`: the prompt leads the answer, as OpenAI sends it; token ids as their text.
    echo = (decoded[0] if decoded else body.prompt_text() or "") if body.echo else ""
    if body.stream:
        return _sse(completion.text_chunks(body.include_usage, echo, continuous=body.continuous_usage), generation)
    text, finished = await _collect(generation, request)
    return completion.text_response(echo + text, finished)


@router.post(
    "/detokenize",
    summary="The text of a text completion's token-id prompt (the gateway's, for the input rails)",
    response_model=None,
    responses={200: {"model": DetokenizedPrompt}, **problem_responses(400, 404, 503)},
)
async def detokenize(body: CompletionRequest, models: ModelsDep) -> dict[str, Any]:
    """The text the served model's tokenizer reads in `body`'s token-id prompt (special tokens
    kept): what the gateway's input rails check before the ids reach the model. Only `prompt` and
    `model` are read; an id outside the vocabulary is the 400 `/v1/completions` answers, a text
    prompt a 400 (it has no ids to decode)."""
    body.refuse_unsupported()
    _check_model(models, body.model)
    ids = body.prompt_ids()
    if ids is None:
        raise _invalid("/v1/detokenize reads a prompt of token ids; this one is text.", "prompt")
    engine = models.current
    if engine is None or engine.loaded is None:
        raise _not_serving(models)
    check_prompt_ids(engine.loaded, body)
    return {"text": await asyncio.to_thread(decode_ids, engine.loaded, ids)}


def check_prompt_ids(loaded: LoadedModel, body: CompletionRequest) -> None:
    """Raise a 400 naming the first id of `body`'s token-id prompt outside the model's vocabulary
    (`prompt[3]`), with `limit` `vocab_size` and `limit_value` the platform's one rule
    (genai_platform.contracts.openai.vocabulary_size): ids the tokenizer can decode and the model
    can embed, 0 to `limit_value - 1`."""
    ids = body.prompt_ids() or []
    vocabulary = vocabulary_size(len(loaded.tokenizer), int(loaded.model.config.vocab_size))
    j = first_unknown_token(ids, vocabulary)
    if j is not None:
        message = f"{body.element(j)} is token id {ids[j]}; {loaded.name}'s vocabulary holds ids 0 to {vocabulary - 1}."
        raise _invalid(message, body.element(j), limit="vocab_size", limit_value=vocabulary)


def decode_ids(loaded: LoadedModel, ids: list[int]) -> str:
    """The text of checked token ids (`check_prompt_ids`), special tokens kept: the model reads them too."""
    return loaded.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


# --- plumbing ------------------------------------------------------------------------------------


def served_names(models: ModelService) -> set[str]:
    """The names a request's `model` may give, in lower case: the served model's id (what /v1/models
    lists), the configured name, the registry model followed, and the configured aliases."""
    settings = models.settings
    registry = RegistryRef.parse(settings.model_source)
    names = {settings.model_name, *settings.model_aliases, *([registry.name] if registry else [])}
    if models.current is not None:
        names.add(models.current.name)
    return {name.lower() for name in names}


def _check_model(models: ModelService, model: str | None) -> None:
    """Raise a 404 naming `model` (OpenAI's `model_not_found`) unless it names the served model
    (without regard to case); no `model` asks for the served one."""
    if model is None or model.lower() in served_names(models):
        return
    served = models.current.name if models.current is not None else models.settings.model_name
    message = f"The model {model!r} is not served here; ask for {served!r}."
    error = error_object(message, param="model", code="model_not_found")
    raise Problem(404, message, title="Model not found", error=error, model=model)


async def _start(
    models: ModelService, encode: Callable[[LoadedModel], list[int]], body: GenerationFields, max_tokens: int | None
) -> Generation:
    def checked(loaded: LoadedModel) -> list[int]:
        # Token ids are the served model's: one past its vocabulary would index past the logits.
        vocabulary = int(loaded.model.config.vocab_size)
        if outside := [token for token, _ in body.biases if token >= vocabulary]:
            message = f"logit_bias: token id {outside[0]} is past the model's vocabulary (ids 0 to {vocabulary - 1})."
            raise _invalid(message, "logit_bias", limit="vocabulary_size", limit_value=vocabulary)
        return encode(loaded)

    try:
        return await start_generation(models, checked, max_tokens, lambda tokens: sampling(body, tokens))
    except NotLoaded as error:
        raise _not_serving(models) from error
    except QueueFull as error:
        retry = str(models.settings.retry_after_s)
        raise Problem(
            429,
            "Every batch slot is busy and the queue is full; retry shortly.",
            headers={"Retry-After": retry},
            error=error_object("Server busy.", "rate_limit_error", code="queue_full"),
        ) from error
    except LimitExceeded as error:
        # OpenAI's code for a prompt and answer past the model's context.
        code = "context_length_exceeded" if error.limit == "context_length" else None
        raise _invalid(
            str(error),
            _limited_field(body, error.limit),
            code=code,
            limit=error.limit,
            limit_value=error.value,
        ) from error


def _limited_field(body: GenerationFields, limit: str) -> str:
    """The field a `LimitExceeded` is about: the token count the client sent, or its input."""
    if limit == "max_tokens":
        chat = isinstance(body, ChatCompletionRequest) and body.max_completion_tokens is not None
        return "max_completion_tokens" if chat else "max_tokens"
    return "messages" if isinstance(body, ChatCompletionRequest) else "prompt"


def _invalid(message: str, param: str, code: str | None = None, **extensions: Any) -> Problem:
    return Problem(400, message, error=error_object(message, param=param, code=code), **extensions)


async def _collect(generation: Generation, request: Request) -> tuple[str, Finished]:
    """The whole answer; if the client disconnects first, free the slot and stop waiting (499)."""
    try:
        text, finished = await while_connected(request, generation.text())
    finally:
        generation.cancel()
    if finished.reason == "error":
        raise Problem(500, "The generation failed.")
    return text, finished


def _sse(chunks: AsyncIterator[dict[str, Any]], generation: Generation) -> StreamingResponse:
    async def events() -> AsyncIterator[str]:
        try:
            async for chunk in chunks:
                yield sse_event(chunk)
            yield "data: [DONE]\n\n"
        finally:
            # Runs when the client disconnects mid-stream too (ClosingStreamingResponse closes this body).
            generation.cancel()

    # no-cache and no proxy buffering: each event must leave as soon as it is produced.
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return ClosingStreamingResponse(events(), media_type="text/event-stream", headers=headers)


def sse_event(data: dict[str, Any]) -> str:
    """One server-sent event in OpenAI's framing."""
    return f"data: {json.dumps(data, separators=(',', ':'), ensure_ascii=False)}\n\n"


def usage(finished: Finished) -> dict[str, int]:
    """OpenAI's usage object for one generation (token counts)."""
    return token_usage(finished.prompt_tokens, finished.completion_tokens)


def token_usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """OpenAI's usage object for these token counts."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _finish_reason(finished: Finished) -> Literal["stop", "length"] | None:
    return finished.reason if finished.reason in ("stop", "length") else None  # type: ignore[return-value]


class Completion:
    """The OpenAI response shapes for one generation, whole or as stream chunks."""

    def __init__(self, kind: Literal["chat.completion", "text_completion"], generation: Generation) -> None:
        prefix = "chatcmpl" if kind == "chat.completion" else "cmpl"
        self.id = f"{prefix}-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.kind = kind
        self.generation = generation
        # The version is the fingerprint: the same weights and settings give the same greedy text.
        self.model = generation.engine.name
        self.fingerprint = f"v{generation.engine.version}"

    def _envelope(self, obj: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": obj,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": self.fingerprint,
        }

    def chat_response(self, text: str, finished: Finished) -> dict[str, Any]:
        """The whole chat answer (`ChatCompletion`'s shape)."""
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "logprobs": None,
            "finish_reason": _finish_reason(finished),
        }
        return {**self._envelope("chat.completion"), "choices": [choice], "usage": usage(finished)}

    def text_response(self, text: str, finished: Finished) -> dict[str, Any]:
        """The whole text completion (`TextCompletion`'s shape)."""
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": _finish_reason(finished)}
        return {**self._envelope("text_completion"), "choices": [choice], "usage": usage(finished)}

    def _usage_so_far(self, continuous: bool, completion_tokens: int) -> dict[str, int] | None:
        # OpenAI sends null usage on every chunk but the last; vLLM's continuous_usage_stats, the
        # counts as of the chunk (the gateway charges a stream its client cut off with them).
        return token_usage(self.generation.prompt_tokens, completion_tokens) if continuous else None

    async def chat_chunks(self, include_usage: bool, continuous: bool = False) -> AsyncIterator[dict[str, Any]]:
        """`chat.completion.chunk` objects: the role, each text delta, the finish reason, then usage
        if asked (on every chunk too with `continuous`); a failed generation ends with an OpenAI
        `error` object instead."""

        def chunk(delta: dict[str, str], reason: str | None = None, tokens: int = 0) -> dict[str, Any]:
            body = {
                **self._envelope("chat.completion.chunk"),
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}],
            }
            if include_usage:
                body["usage"] = self._usage_so_far(continuous, tokens)
            return body

        yield chunk({"role": "assistant", "content": ""})
        async for event in self.generation:
            if isinstance(event, TextDelta):
                yield chunk({"content": event.text}, tokens=event.completion_tokens)
        finished = self.generation.finished
        assert finished is not None
        if finished.reason == "error":
            yield {"error": {"message": "The generation failed.", "type": "server_error", "code": None}}
            return
        yield chunk({}, _finish_reason(finished), tokens=finished.completion_tokens)
        if include_usage:
            yield {**self._envelope("chat.completion.chunk"), "choices": [], "usage": usage(finished)}

    async def text_chunks(
        self, include_usage: bool, echo: str = "", *, continuous: bool = False
    ) -> AsyncIterator[dict[str, Any]]:
        """`text_completion` chunks: `echo` (the prompt, when asked for) then each text delta, the finish
        reason, then usage if asked (on every chunk too with `continuous`); a failed generation
        ends with an OpenAI `error` object instead."""

        def chunk(text: str, reason: str | None = None, tokens: int = 0) -> dict[str, Any]:
            body = {
                **self._envelope("text_completion"),
                "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": reason}],
            }
            if include_usage:
                body["usage"] = self._usage_so_far(continuous, tokens)
            return body

        if echo:
            yield chunk(echo)
        async for event in self.generation:
            if isinstance(event, TextDelta):
                yield chunk(event.text, tokens=event.completion_tokens)
        finished = self.generation.finished
        assert finished is not None
        if finished.reason == "error":
            yield {"error": {"message": "The generation failed.", "type": "server_error", "code": None}}
            return
        yield chunk("", _finish_reason(finished), tokens=finished.completion_tokens)
        if include_usage:
            yield {**self._envelope("text_completion"), "choices": [], "usage": usage(finished)}
