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
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from referencing import Registry, Resource
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

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


# No retrieval: a `$ref` to another document is never fetched (jsonschema's default registry
# fetches http(s) URLs). validate_draft refuses such a reference; a version stored before it did
# is a 422 at render.
OFFLINE = Registry()
# A variable nests at most this deep: validation recurses once per level (and per `$ref`), and
# jsonschema's recursion must stay well inside the interpreter's limit.
MAX_VARIABLE_DEPTH = 64
# And a variable schema (its JSON: `properties` then a property are two levels): the metaschema's
# check recurses several calls per level.
MAX_SCHEMA_DEPTH = 64
# Defaults a single fill may set: a schema whose defaults refer to one another can multiply them
# without end (each filled default fills the others below it); past this it is a 422.
MAX_DEFAULT_FILLS = 1_000
# Keywords that apply a subschema to the same value: a cycle through these (and `$ref`s) never ends.
_IN_PLACE_LISTS = ("allOf", "anyOf", "oneOf")
_IN_PLACE_ONE = ("not", "if", "then", "else")
_REFERENCES = ("$ref", "$dynamicRef")


class DefaultsOverLimit(ValueError):
    """Filling a schema's defaults set more than MAX_DEFAULT_FILLS of them."""


def _resource(schema: Any) -> Resource[Any]:
    return DRAFT202012.create_resource(schema)


class DefaultFiller:
    """Fills in the `default` of every property a value lacks, at the top level and in nested
    objects reached through `properties` and `$ref` (JSON Schema's `default` keyword; Langfuse's and
    MLflow's prompt registries fill them the same way); it checks nothing. Defaults under `anyOf`,
    `oneOf`, `if`, ... are not filled: which branch applies is only known once the values are complete.

    It ends on any schema: a property's default is not filled again inside a value filled from that
    same default (`{"a": {"$ref": "#", "default": {}}}` fills `{"a": {}}`), a `$ref` already applied
    to a value is not applied to it again, and past MAX_DEFAULT_FILLS it raises DefaultsOverLimit.
    References resolve inside the schema only (OFFLINE); one that does not raises Unresolvable.
    """

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.schema = schema
        self._root = OFFLINE.resolver_with_root(_resource(schema))

    def fill(self, values: Any, schema: Any = None) -> Any:
        """A copy of `values` with the defaults filled in; given values always win. `schema`: a
        subschema of the filler's, for a value inside it."""
        filled = copy.deepcopy(values)
        # The count lives in this call: one filler serves concurrent renders (the render cache).
        fills = [0]
        self._walk(filled, self.schema if schema is None else schema, self._root, fills, frozenset(), frozenset())
        return filled

    def _walk(
        self,
        value: Any,
        schema: Any,
        resolver: Any,
        fills: list[int],
        filled_from: frozenset[int],
        applied: frozenset[int],
    ) -> None:
        if not isinstance(schema, Mapping) or id(schema) in applied:
            return
        applied |= {id(schema)}
        resolver = resolver.in_subresource(_resource(schema))  # a `$id` moves the base, as in jsonschema
        for keyword, argument in schema.items():
            if keyword == "$ref" and isinstance(argument, str):
                resolved = resolver.lookup(argument)
                self._walk(value, resolved.contents, resolved.resolver, fills, filled_from, applied)
            elif keyword == "properties" and isinstance(value, dict) and isinstance(argument, Mapping):
                for name, subschema in argument.items():
                    if not isinstance(subschema, Mapping):
                        continue
                    inside = filled_from
                    if name not in value and "default" in subschema and id(subschema) not in filled_from:
                        fills[0] += 1
                        if fills[0] > MAX_DEFAULT_FILLS:
                            many = f"the schema's defaults fill more than {MAX_DEFAULT_FILLS} values"
                            raise DefaultsOverLimit(f"{many}: they refer to one another")
                        value[name] = copy.deepcopy(subschema["default"])
                        inside = filled_from | {id(subschema)}
                    if name in value:
                        self._walk(value[name], subschema, resolver, fills, inside, frozenset())


def fill_defaults(filler: DefaultFiller, values: Any, schema: Mapping[str, Any] | None = None) -> Any:
    """A copy of `values` with the `default` of every property it lacks filled in (DefaultFiller)."""
    return filler.fill(values, schema)


def _reference_problems(schema: Mapping[str, Any]) -> list[dict[str, str]]:
    """A 422 entry for each `$ref` (or `$dynamicRef`) that does not resolve inside the schema (it is
    never fetched), and for one through which the schema applies itself to the same value without
    end (`{"$ref": "#"}`, or `allOf`/`not`/... leading back): validating any value would never end.

    Walks every subschema JSON Schema knows and every reference's target (which may lie under a
    keyword it does not), as jsonschema's validator resolves them.
    """
    problems: list[dict[str, str]] = []
    root = _resource(schema)
    start = (schema, OFFLINE.resolver_with_root(root))
    nodes: dict[int, tuple[Any, Any]] = {}
    # Edges that keep the value where it is, each with the reference it goes through (or None).
    in_place: dict[int, list[tuple[int, str | None]]] = {}
    dynamic_anchors: dict[str, list[int]] = {}
    dynamic_refs: list[tuple[int, str]] = []
    pending = [start]
    while pending:
        node, resolver = pending.pop()
        if id(node) in nodes:
            continue
        nodes[id(node)] = (node, resolver)
        edges = in_place.setdefault(id(node), [])
        if not isinstance(node, Mapping):
            continue
        resource = _resource(node)
        try:
            resolver = resolver.in_subresource(resource)
        except ValueError as error:
            problems.append({"location": "variables", "message": f"`$id` {node.get('$id')!r} is not a URI: {error}"})
            continue
        for keyword in _REFERENCES:
            reference = node.get(keyword)
            if not isinstance(reference, str):
                continue
            try:
                resolved = resolver.lookup(reference)
            except (Unresolvable, ValueError, TypeError):  # TypeError: a pointer into `true` (referencing)
                problems.append(
                    {
                        "location": "variables",
                        "message": f"`{keyword}` {reference!r} does not resolve inside the schema: only references "
                        "inside the variable schema (`#/$defs/...`, or under its `$id`) are followed, never fetched",
                    }
                )
                continue
            edges.append((id(resolved.contents), f"`{keyword}` {reference!r}"))
            pending.append((resolved.contents, resolved.resolver))
            if keyword == "$dynamicRef" and "#" in reference:
                dynamic_refs.append((id(node), reference))
        if isinstance(node.get("$dynamicAnchor"), str):
            dynamic_anchors.setdefault(node["$dynamicAnchor"], []).append(id(node))
        same_value = [node.get(keyword) for keyword in _IN_PLACE_ONE]
        for keyword in _IN_PLACE_LISTS:
            if isinstance(node.get(keyword), list):
                same_value.extend(node[keyword])
        if isinstance(node.get("dependentSchemas"), Mapping):
            same_value.extend(node["dependentSchemas"].values())
        for child in same_value:
            if isinstance(child, (Mapping, bool)):
                edges.append((id(child), None))
        for child in resource.subresources():
            pending.append((child.contents, resolver))
        pending.extend((child, resolver) for child in same_value if isinstance(child, (Mapping, bool)))
    # A `$dynamicRef` may land on any `$dynamicAnchor` of its name in scope: count every one.
    for source, reference in dynamic_refs:
        for target in dynamic_anchors.get(reference.rsplit("#", 1)[1], []):
            in_place[source].append((target, f"`$dynamicRef` {reference!r}"))
    cycle = _cycle(in_place)
    if cycle is not None:
        through = next((reference for reference in cycle if reference is not None), "a reference")
        problems.append(
            {
                "location": "variables",
                "message": f"the schema applies itself to the same value without end through {through}: "
                "a reference back must go through a property or an item (`properties`, `items`, ...)",
            }
        )
    return problems


def _cycle(edges: Mapping[int, list[tuple[int, str | None]]]) -> list[str | None] | None:
    """The references along one cycle of `edges`, or None when there is none (iterative DFS)."""
    done: set[int] = set()
    for start in edges:
        if start in done:
            continue
        on_path: dict[int, int] = {start: 0}
        trail: list[str | None] = []
        stack = [(start, iter(edges.get(start, ())))]
        while stack:
            node, successors = stack[-1]
            step = next(successors, None)
            if step is None:
                stack.pop()
                on_path.pop(node)
                done.add(node)
                if trail:
                    trail.pop()
                continue
            target, reference = step
            if target in on_path:
                return [*trail[on_path[target] :], reference]
            if target in done:
                continue
            on_path[target] = len(trail) + 1
            trail.append(reference)
            stack.append((target, iter(edges.get(target, ()))))
    return None


# The answer when a schema's references cannot be followed to an end (a version stored before
# validate_draft refused them) or a value nests deeper than validation can follow.
_UNCHECKABLE = (
    "the variable schema cannot be checked: a reference in it does not resolve inside it or never ends, "
    "or the value nests too deep"
)


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
    checker, filler = Draft202012Validator(schema, registry=OFFLINE), DefaultFiller(schema)
    problems = []
    for where, subschema in _declared_defaults(schema, "variables"):
        try:
            value = fill_defaults(filler, subschema["default"], subschema)
            errors = sorted(checker.descend(value, subschema), key=lambda e: list(e.absolute_path))
        except DefaultsOverLimit as over:
            problems.append({"location": where, "message": str(over)})
            continue
        except (RecursionError, Unresolvable, ValueError, TypeError):
            # What _reference_problems misses (a `$schema` of another draft in a subschema, ...).
            problems.append({"location": where, "message": _UNCHECKABLE})
            continue
        error = next(iter(errors), None)
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


def _schema_problems(schema: Mapping[str, Any]) -> list[dict[str, str]]:
    """A 422 entry for a schema the metaschema refuses, else for each reference and default of it
    that could never work."""
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as error:
        return [{"location": "variables", "message": f"not a valid JSON Schema: {error.message}"}]
    # Defaults are filled (and checked) only in a schema whose references are known to end.
    return _reference_problems(schema) or _default_problems(schema)


def validate_draft(draft: VersionDraft) -> None:
    """Refuse a version that could never render: bad syntax, a bad schema, undeclared variables."""
    errors: list[dict[str, str]] = []
    schema = draft.variables
    if schema.get("type", "object") != "object":
        errors.append({"location": "variables", "message": "the variable schema must have type object"})
    if _depth(schema) > MAX_SCHEMA_DEPTH:
        # Checking it against the metaschema would recurse past the interpreter's limit (a 500).
        errors.append({"location": "variables", "message": f"the schema nests deeper than {MAX_SCHEMA_DEPTH} levels"})
    else:
        errors.extend(_schema_problems(schema))
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
    defaults: DefaultFiller
    # The variables the version declares (its schema's `properties`): the only names a caller may give.
    declared: frozenset[str]
    # The schema's references do not resolve inside it or never end (a version stored before
    # validate_draft refused that): no value is checked against it, every render is a 422.
    uncheckable: bool = False


def compile_version(version: Mapping[str, Any]) -> CompiledVersion:
    env = environment()
    sources = template_sources(version)
    roles = ("user",) if version["type"] == PromptType.TEXT else tuple(m["role"] for m in version["messages"])
    return CompiledVersion(
        type=PromptType(version["type"]),
        roles=roles,
        templates=tuple(env.from_string(source) for _, source in sources),
        validator=Draft202012Validator(version["variables"], registry=OFFLINE),
        defaults=DefaultFiller(version["variables"]),
        declared=frozenset(version["variables"].get("properties", {})),
        uncheckable=bool(_reference_problems(version["variables"])),
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
    for name, value in {**offered, **variables}.items():
        if _depth(value) > MAX_VARIABLE_DEPTH:
            errors.append({"variable": shown_name(name), "message": f"nests deeper than {MAX_VARIABLE_DEPTH} levels"})
    if compiled.uncheckable:
        errors.append({"variable": "(variables)", "message": _UNCHECKABLE})
    if errors:
        raise VariablesError(errors)
    try:
        variables = fill_defaults(compiled.defaults, {**offered, **variables})
        found = sorted(compiled.validator.iter_errors(variables), key=lambda e: list(e.absolute_path))
    except DefaultsOverLimit as over:
        raise VariablesError([{"variable": "(variables)", "message": str(over)}]) from None
    except (RecursionError, Unresolvable, ValueError, TypeError):
        # A version stored before validate_draft refused such schemas, or a value nested past the
        # interpreter's recursion limit.
        raise VariablesError([{"variable": "(variables)", "message": _UNCHECKABLE}]) from None
    for error in found:
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


def _depth(value: Any) -> int:
    """How many arrays and objects deep `value` nests (0 for a scalar), without recursion."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        node, level = pending.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is not None:
            deepest = max(deepest, level)
            pending.extend((child, level + 1) for child in children)
    return deepest


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
