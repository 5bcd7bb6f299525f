"""Prompt templates: what a version holds, how its text is checked, and how it is rendered.

Templates are Jinja2 run in a sandbox (no attribute access to Python internals, no imports) with
`StrictUndefined`, so a variable the caller forgot is an error, never an empty string in a prompt.
Variables are described by a JSON Schema object; a render fills in the `default` of each property
the caller left out, then validates the values against it, so a 422 names the variable and says
what is wrong with it.
"""

from __future__ import annotations

import copy
import ctypes
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Any, Literal, TypeVar

import jinja2
from jinja2 import meta
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import SchemaError
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from genai_platform.contracts.openai import MAX_COMPLETION_TOKENS
from genai_platform.contracts.prompts import (
    PROMPT_LABEL_PATTERN,
    PROMPT_NAME_PATTERN,
    shown_name,
    variable_name_problem,
)
from prompts.errors import OverLimit

# Names and labels end up inside state keys and URLs: keep them to a small, unambiguous alphabet.
# A label starts with a letter, so it never reads as a version number: `2` is version 2 only.
# The ui's fields hint the same rules (genai_platform.contracts.prompts).
NAME_PATTERN = f"^{PROMPT_NAME_PATTERN}$"
LABEL_PATTERN = f"^{PROMPT_LABEL_PATTERN}$"
# A version reference: a number (1 to 999,999,999) or a label.
REF_PATTERN = f"^(?:[1-9][0-9]{{0,8}}|{PROMPT_LABEL_PATTERN})$"
_NAME = re.compile(NAME_PATTERN)
_LABEL = re.compile(LABEL_PATTERN)

# A rendered prompt longer than this is a runaway loop in a template, not a prompt.
MAX_RENDERED_CHARS = 200_000
# A prompt renders in milliseconds; one still running after this is a loop bomb (nested loops of
# 99,999 passed the sandbox's own limit, one range of at most 100,000, and held a worker at 100 %
# CPU and 6 GB until it was killed: found by a new-user trial).
RENDER_TIMEOUT_S = 2.0
# `x ** y` computes in one C call no timeout can stop: a larger integer exponent is refused.
MAX_EXPONENT = 100

_T = TypeVar("_T")


class RenderTimeout(Exception):  # noqa: N818 - raised inside the render thread, never outside this module
    """The render ran past RENDER_TIMEOUT_S."""


def run_with_deadline(work: Callable[[], _T], seconds: float) -> _T:
    """`work()` in this thread, stopped with RenderTimeout once it has run `seconds`.

    Jinja compiles a template to Python, so its loops run Python bytecode, and CPython delivers an
    exception set with PyThreadState_SetAsyncExc at the next bytecode boundary: the only way to
    stop a running Python loop from outside without a process per render. The lock keeps the
    timer from setting it once `work` has returned.
    """
    thread_id = threading.get_ident()
    lock = threading.Lock()
    running = True

    def expire() -> None:
        with lock:
            if running:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(RenderTimeout))

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    try:
        return work()
    finally:
        with lock:
            running = False
        timer.cancel()


class PromptEnvironment(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, with `*` and `**` checked before they run (one C call each, which
    no timeout stops): a string or list repeated past MAX_RENDERED_CHARS, or an exponent over
    MAX_EXPONENT, is a SecurityError."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for sequence, times in ((left, right), (right, left)):
                repeated = isinstance(sequence, (str, list, tuple)) and isinstance(times, int)
                if repeated and len(sequence) * times > MAX_RENDERED_CHARS:
                    raise SecurityError("a repetition past the rendered prompt's limit")
        if operator == "**" and isinstance(right, int) and abs(right) > MAX_EXPONENT:
            raise SecurityError(f"an exponent over {MAX_EXPONENT}")
        return super().call_binop(context, operator, left, right)


class TemplateError(ValueError):
    """A template or variable schema cannot be used; `errors` say where and why."""

    def __init__(self, message: str, errors: list[dict[str, str]]) -> None:
        super().__init__(message)
        self.errors = errors


class VariablesError(ValueError):
    """The caller's variables do not fit the version's schema; `errors` name each variable."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("the variables do not match the prompt's variable schema")
        self.errors = errors


class PromptType(StrEnum):
    TEXT = "text"
    CHAT = "chat"


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant", "tool"]
    content: str = Field(max_length=100_000)


StopSequence = Annotated[str, Field(min_length=1, max_length=200)]


class ModelConfig(BaseModel):
    """Generation settings that travel with a version: OpenAI's sampling fields with their ranges.

    Ranges are those of OpenAI's chat completions API reference (temperature 0-2, top_p in
    (0, 1], penalties -2 to 2, up to 4 stop sequences). Strict: a value of the wrong type (a
    list for `temperature`, 2.5 as `seed`) and a key that is none of these is refused (422 naming
    `config.<field>`), never stored to fail later at render or generation time; so is a number
    sent as a string (`"max_tokens": "100"` was stored as 100: a new-user trial). An integer is
    a number where a float is asked for.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    model: str | None = Field(None, max_length=200)
    temperature: float | None = Field(None, ge=0.0, le=2.0, allow_inf_nan=False)
    # Its upper limit is checked by `check_limits` when a version is created, not by `le=` here:
    # the shared validation answer (genai_platform.errors) names the field but not the limit
    # (`limit`, `limit_value`). The schema shows the maximum all the same.
    max_tokens: Annotated[int, Field(ge=1, json_schema_extra={"maximum": MAX_COMPLETION_TOKENS})] | None = Field(
        None,
        description=f"At most {MAX_COMPLETION_TOKENS} (MAX_COMPLETION_TOKENS, the platform's one limit on an "
        "answer's tokens); more is a 422 naming the limit.",
    )
    top_p: float | None = Field(None, gt=0.0, le=1.0, allow_inf_nan=False)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0, allow_inf_nan=False)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0, allow_inf_nan=False)
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1)
    stop: Annotated[list[StopSequence], Field(max_length=4)] | None = None


class VersionDraft(BaseModel):
    """What a caller sends to make a new version; the number and timestamps are the store's."""

    model_config = ConfigDict(extra="forbid")

    type: PromptType = PromptType.CHAT
    template: str | None = Field(None, max_length=100_000, description="The template of a `text` prompt.")
    messages: list[Message] | None = Field(
        None, max_length=200, description="The message templates of a `chat` prompt."
    )
    variables: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        description="A JSON Schema (type object) describing the variables.",
    )
    config: ModelConfig = Field(default_factory=ModelConfig)
    commit_message: str = Field("", max_length=2000)
    labels: list[str] = Field(default_factory=list, max_length=20, description="Labels to point at this version.")

    @field_validator("labels")
    @classmethod
    def _labels_are_valid(cls, labels: list[str]) -> list[str]:
        for label in labels:
            check_label(label)
            if label == "latest":
                raise ValueError("`latest` is kept by the service and cannot be set")
        return list(dict.fromkeys(labels))

    @model_validator(mode="after")
    def _body_fits_type(self) -> VersionDraft:
        if self.type is PromptType.TEXT and (self.template is None or self.messages is not None):
            raise ValueError("a text prompt has a `template` and no `messages`")
        if self.type is PromptType.CHAT and (not self.messages or self.template is not None):
            raise ValueError("a chat prompt has `messages` (at least one) and no `template`")
        return self


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"a prompt name matches {NAME_PATTERN}")
    return name


def check_label(label: str) -> str:
    if not _LABEL.match(label):
        raise ValueError(
            f"a label matches {LABEL_PATTERN}: it starts with a lowercase letter, so it never reads as a version number"
        )
    return label


def _fill_property_defaults(validator: Any, properties: Any, instance: Any, schema: Mapping[str, Any]) -> Iterator[Any]:
    """jsonschema's `properties` keyword, setting each absent property's `default` (a copy) first.

    jsonschema validates and never fills defaults; its FAQ's answer is this hook on `properties`.
    """
    if not validator.is_type(instance, "object") or not isinstance(properties, Mapping):
        return
    for name, subschema in properties.items():
        if name not in instance and isinstance(subschema, Mapping) and "default" in subschema:
            instance[name] = copy.deepcopy(subschema["default"])
        if name in instance:
            yield from validator.descend(instance[name], subschema, path=name, schema_path=name)


# A validator class that knows only `properties` (and `$ref`, to follow `#/$defs/...`): running it
# fills defaults down nested objects and checks nothing. Defaults under `anyOf`, `oneOf`, `if`, ...
# are not filled: which branch applies is only known once the values are complete.
DefaultFiller = validators.create(
    meta_schema=Draft202012Validator.META_SCHEMA,
    validators={"properties": _fill_property_defaults, "$ref": Draft202012Validator.VALIDATORS["$ref"]},
    type_checker=Draft202012Validator.TYPE_CHECKER,
)


def fill_defaults(filler: Any, values: Any, schema: Mapping[str, Any] | None = None) -> Any:
    """A copy of `values` with the `default` of every property it lacks filled in, at the top level
    and in nested objects reached through `properties` (JSON Schema's `default` keyword; Langfuse's
    and MLflow's prompt registries fill them the same way). Given values always win. `schema`: a
    subschema of the filler's, for a value inside it."""
    filled = copy.deepcopy(values)
    errors = filler.iter_errors(filled) if schema is None else filler.descend(filled, schema)
    for _ in errors:  # the filler checks nothing; running it is what fills
        pass
    return filled


def _declared_defaults(schema: Mapping[str, Any], location: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(where, property schema) of every property that declares a `default`, nested ones included."""
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return
    for name, subschema in properties.items():
        if not isinstance(subschema, Mapping):
            continue
        where = f"{location}.properties.{shown_name(name)}"
        if "default" in subschema:
            yield f"{where}.default", subschema
        yield from _declared_defaults(subschema, where)


def _default_problems(schema: Mapping[str, Any]) -> list[dict[str, str]]:
    """A 422 entry for each declared `default` its property's schema refuses (with its own nested
    defaults filled in, as a render would): such a default could only ever fail at render time."""
    checker, filler = Draft202012Validator(schema), DefaultFiller(schema)
    problems = []
    for where, subschema in _declared_defaults(schema, "variables"):
        value = fill_defaults(filler, subschema["default"], subschema)
        error = next(iter(sorted(checker.descend(value, subschema), key=lambda e: list(e.absolute_path))), None)
        if error is not None:
            inside = ".".join(map(str, error.absolute_path))
            problem = (
                f"the default does not fit its property's schema: {inside + ': ' if inside else ''}{error.message}"
            )
            problems.append({"location": where, "message": problem})
    return problems


@lru_cache(maxsize=1)
def environment() -> PromptEnvironment:
    # autoescape off: prompts are plain text, not HTML. keep_trailing_newline: the author's text verbatim.
    return PromptEnvironment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)


def template_sources(draft: VersionDraft | Mapping[str, Any]) -> list[tuple[str, str]]:
    """(where, source) for every template text of a version: `template` or `messages[i].content`."""
    data = draft.model_dump() if isinstance(draft, VersionDraft) else draft
    if data["type"] == PromptType.TEXT:
        return [("template", data["template"])]
    return [(f"messages[{i}].content", m["content"]) for i, m in enumerate(data["messages"])]


def check_limits(draft: VersionDraft, at: str = "config") -> None:
    """Raise `OverLimit` (422 naming `<at>.max_tokens`, limit `max_tokens`) when the version's
    `max_tokens` asks for more than MAX_COMPLETION_TOKENS (genai_platform.contracts.openai): the
    gateway and inference refuse a request for more, so a version asking for it could only ever
    be cut down or refused (a new-user trial stored 1,000,000)."""
    requested = draft.config.max_tokens
    if requested is not None and requested > MAX_COMPLETION_TOKENS:
        message = f"max_tokens is {requested}, over the limit of {MAX_COMPLETION_TOKENS}."
        raise OverLimit(f"{at}.max_tokens", message, limit="max_tokens", limit_value=MAX_COMPLETION_TOKENS)


def validate_draft(draft: VersionDraft) -> None:
    """Refuse a version that could never render: bad syntax, a bad schema, undeclared variables."""
    errors: list[dict[str, str]] = []
    schema = draft.variables
    if schema.get("type", "object") != "object":
        errors.append({"location": "variables", "message": "the variable schema must have type object"})
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as error:
        errors.append({"location": "variables", "message": f"not a valid JSON Schema: {error.message}"})
    else:
        errors.extend(_default_problems(schema))
    declared = set(schema.get("properties", {}))
    for name in sorted(declared):
        if (problem := variable_name_problem(name)) is not None:
            errors.append({"location": f"variables.properties.{shown_name(name)}", "message": problem})
    env = environment()
    for where, source in template_sources(draft):
        try:
            used = meta.find_undeclared_variables(env.parse(source))
        except jinja2.TemplateSyntaxError as error:
            errors.append({"location": where, "message": f"template syntax error on line {error.lineno}: {error}"})
            continue
        for name in sorted(used - declared):
            errors.append({"location": where, "message": f"variable `{name}` is used but not declared in `variables`"})
    if errors:
        raise TemplateError("the version cannot be rendered", errors)


@dataclass(frozen=True)
class CompiledVersion:
    """A version's templates parsed once; rendering is then only evaluation."""

    type: PromptType
    roles: tuple[str, ...]
    templates: tuple[jinja2.Template, ...]
    validator: Draft202012Validator
    # Fills in the schema's `default`s (fill_defaults).
    defaults: Any
    # The variables the version declares (its schema's `properties`): the only names a caller may give.
    declared: frozenset[str]


def compile_version(version: Mapping[str, Any]) -> CompiledVersion:
    env = environment()
    sources = template_sources(version)
    roles = ("user",) if version["type"] == PromptType.TEXT else tuple(m["role"] for m in version["messages"])
    return CompiledVersion(
        type=PromptType(version["type"]),
        roles=roles,
        templates=tuple(env.from_string(source) for _, source in sources),
        validator=Draft202012Validator(version["variables"]),
        defaults=DefaultFiller(version["variables"]),
        declared=frozenset(version["variables"].get("properties", {})),
    )


def check_variables(
    compiled: CompiledVersion, variables: Mapping[str, Any], platform_variables: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The variables a render fills in: the caller's `variables` over the `platform_variables` the
    version declares (the rest of those are left out unchecked), over the schema's `default`s for
    properties neither gives (fill_defaults; a `required` property with a default is then given).

    Raises `VariablesError` naming each variable that is wrong: a caller's name that is not a
    variable name (`variable_name_problem`) or not declared by the version, else each value the
    version's schema refuses.
    """
    errors = []
    for name in variables:
        problem = variable_name_problem(name)
        if problem is None and name not in compiled.declared:
            declared = ", ".join(sorted(compiled.declared)) or "none"
            problem = f"is not a variable of this prompt version (declared: {declared})"
        if problem is not None:
            errors.append({"variable": shown_name(name), "message": problem})
    if errors:
        raise VariablesError(errors)
    offered = {name: value for name, value in (platform_variables or {}).items() if name in compiled.declared}
    variables = fill_defaults(compiled.defaults, {**offered, **variables})
    for error in sorted(compiled.validator.iter_errors(variables), key=lambda e: list(e.absolute_path)):
        path = ".".join(str(part) for part in error.absolute_path)
        if error.validator == "required":
            # jsonschema reports a missing key at the parent: name the variable itself.
            missing = [n for n in error.validator_value if n not in (error.instance or {})]
            for name in missing:
                errors.append({"variable": ".".join(filter(None, [path, name])), "message": "is required"})
            continue
        errors.append({"variable": path or "(variables)", "message": error.message})
    if errors:
        raise VariablesError(errors)
    return variables


def render(
    compiled: CompiledVersion, variables: Mapping[str, Any], platform_variables: Mapping[str, Any] | None = None
) -> list[dict[str, str]]:
    """The version's messages with `variables` filled in; raises VariablesError naming what is wrong.

    `platform_variables` are values a platform service offers every prompt (the gateway: the
    question and the retrieved context): those the version declares are filled in under the
    caller's, the rest are left out unchecked. A property neither gives takes its schema's `default`.
    """
    variables = check_variables(compiled, variables, platform_variables)
    try:
        return run_with_deadline(lambda: _render_messages(compiled, variables), RENDER_TIMEOUT_S)
    except RenderTimeout:
        too_slow = {"variable": "(template)", "message": f"the template ran past {RENDER_TIMEOUT_S:g} s"}
        raise VariablesError([too_slow]) from None


def _render_messages(compiled: CompiledVersion, variables: Mapping[str, Any]) -> list[dict[str, str]]:
    # Piece by piece (Jinja's generate), so a runaway output stops at the limit instead of filling memory.
    messages = []
    total = 0
    for role, template in zip(compiled.roles, compiled.templates, strict=True):
        pieces: list[str] = []
        try:
            for piece in template.generate(**variables):
                total += len(piece)
                if total > MAX_RENDERED_CHARS:
                    raise VariablesError([{"variable": "(template)", "message": "the rendered prompt is too long"}])
                pieces.append(piece)
            content = "".join(pieces)
        except VariablesError:
            raise
        except jinja2.UndefinedError as error:
            # A variable the schema does not require but the template needs (e.g. a nested key).
            raise VariablesError([{"variable": "(template)", "message": str(error.message)}]) from error
        except jinja2.exceptions.SecurityError as error:
            unsafe = {"variable": "(template)", "message": "the template tried an unsafe operation"}
            raise VariablesError([unsafe]) from error
        except (TypeError, ValueError, ArithmeticError) as error:
            raise VariablesError([{"variable": "(template)", "message": f"rendering failed: {error}"}]) from error
        messages.append({"role": role, "content": content})
    return messages
