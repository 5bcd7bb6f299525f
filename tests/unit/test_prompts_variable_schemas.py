"""A variable schema that refers to itself or to another document is a 422, never a 500, and is
never fetched: a reviewer found `{"a": {"$ref": "#", "default": {}}}` a RecursionError on create
and on render, and a remote `$ref` a `referencing` Unresolvable on create. Here the schema
functions are called directly, then the routes in process over the fake sidecar, then Hypothesis
tries small recursive and referring schemas."""

from __future__ import annotations

import contextlib
import socket
import urllib.request
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from prompts.store import PromptStore
from prompts.templates import (
    MAX_DEFAULT_FILLS,
    MAX_SCHEMA_DEPTH,
    MAX_VARIABLE_DEPTH,
    TemplateError,
    VariablesError,
    VersionDraft,
    check_variables,
    compile_version,
    validate_draft,
)

REMOTE = "https://example.com/s.json"


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Every attempt to reach another host is recorded (and fails): the test asserts there is none."""
    attempts: list[Any] = []
    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> Any:
        if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "::1", "localhost"):
            attempts.append(address)
            raise OSError("network access attempted in a unit test")
        return real_connect(self, address)

    def urlopen(url: Any, *args: Any, **kwargs: Any) -> Any:
        attempts.append(url)
        raise OSError("network access attempted in a unit test")

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    yield attempts
    assert attempts == [], f"a remote $ref was fetched: {attempts}"


def draft(schema: dict[str, Any], template: str = "{{ a }}") -> VersionDraft:
    return VersionDraft(type="text", template=template, variables=schema)


def refused(schema: dict[str, Any], template: str = "{{ a }}") -> list[dict[str, str]]:
    with pytest.raises(TemplateError) as caught:
        validate_draft(draft(schema, template))
    # A schema without properties also leaves the template's `a` undeclared: not what is tested here.
    return [error for error in caught.value.errors if error["location"] != "template"]


SELF_WITH_DEFAULT = {"type": "object", "properties": {"a": {"$ref": "#", "default": {}}}}


def test_a_property_referring_to_its_own_schema_with_a_default_fills_one_level_and_renders() -> None:
    validate_draft(draft(SELF_WITH_DEFAULT))
    version = compile_version(draft(SELF_WITH_DEFAULT).model_dump(mode="json"))
    # The default is filled once; below it the same default is not filled again (it would never end).
    assert check_variables(version, {}) == {"a": {}}
    # A value the caller gives is walked as deep as it goes, and the default fills once below it.
    assert check_variables(version, {"a": {"a": {}}}) == {"a": {"a": {"a": {}}}}


@pytest.mark.parametrize(
    "schema",
    [
        {"$ref": REMOTE},
        {"type": "object", "properties": {"a": {"$ref": REMOTE, "default": {}}}},
        {"type": "object", "properties": {"a": {"$ref": f"{REMOTE}#/$defs/x"}}},
        {"type": "object", "properties": {"a": {"$dynamicRef": REMOTE}}},
        # Reached only through a pointer into a keyword JSON Schema does not know.
        {"type": "object", "x": {"$ref": REMOTE}, "properties": {"a": {"$ref": "#/x"}}},
        # The metaschema is another document too.
        {"type": "object", "properties": {"a": {"$ref": "https://json-schema.org/draft/2020-12/schema"}}},
    ],
)
def test_a_remote_ref_is_refused_naming_it_and_never_fetched(schema: dict[str, Any]) -> None:
    errors = refused(schema)
    assert [e["location"] for e in errors] == ["variables"], errors
    ref = REMOTE if "json-schema.org" not in str(schema) else "https://json-schema.org/draft/2020-12/schema"
    assert ref in errors[0]["message"]
    assert "inside the schema" in errors[0]["message"]


def test_a_ref_to_a_missing_definition_is_refused_naming_it() -> None:
    errors = refused({"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}})
    assert errors[0]["location"] == "variables" and "#/$defs/missing" in errors[0]["message"]


def test_a_ref_under_an_id_resolves_inside_the_schema_without_fetching() -> None:
    schema = {
        "$id": REMOTE,
        "type": "object",
        "$defs": {"n": {"type": "integer"}},
        "properties": {"a": {"$ref": "s.json#/$defs/n", "default": 2}},
    }
    validate_draft(draft(schema))
    version = compile_version(draft(schema).model_dump(mode="json"))
    assert check_variables(version, {}) == {"a": 2}
    with pytest.raises(VariablesError) as caught:
        check_variables(version, {"a": "two"})
    assert caught.value.errors == [{"variable": "a", "message": "'two' is not of type 'integer'"}]


@pytest.mark.parametrize(
    "schema",
    [
        {"$ref": "#"},
        {"type": "object", "allOf": [{"$ref": "#"}]},
        {"type": "object", "properties": {"a": {"$ref": "#/$defs/x"}}, "$defs": {"x": {"$ref": "#/$defs/x"}}},
        {
            "type": "object",
            "properties": {"a": {"$ref": "#/$defs/x"}},
            "$defs": {"x": {"anyOf": [{"type": "string"}, {"not": {"$ref": "#/$defs/y"}}]}, "y": {"$ref": "#/$defs/x"}},
        },
    ],
)
def test_a_schema_that_applies_itself_to_the_same_value_without_end_is_refused_naming_the_ref(
    schema: dict[str, Any],
) -> None:
    errors = refused(schema)
    assert [e["location"] for e in errors] == ["variables"], errors
    assert "$ref" in errors[0]["message"] and "itself" in errors[0]["message"]


def test_a_recursive_schema_that_descends_into_the_value_is_accepted() -> None:
    tree = {
        "type": "object",
        "properties": {
            "a": {
                "$ref": "#/$defs/node",
                "default": {"name": "root", "children": []},
            }
        },
        "$defs": {
            "node": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "default": "leaf"},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
                    "next": {"$ref": "#/$defs/node"},
                },
            }
        },
    }
    validate_draft(draft(tree))
    version = compile_version(draft(tree).model_dump(mode="json"))
    assert check_variables(version, {"a": {"next": {"next": {}}}}) == {
        "a": {"name": "leaf", "next": {"name": "leaf", "next": {"name": "leaf"}}}
    }
    with pytest.raises(VariablesError):
        check_variables(version, {"a": {"next": {"name": 3}}})


def test_defaults_that_multiply_without_end_are_a_422_at_the_limit() -> None:
    # Every definition's properties refer to every definition with a default: each default filled
    # fills all the others below it, a tree of n! objects.
    names = [f"d{i}" for i in range(9)]
    definitions = {
        name: {"type": "object", "properties": {other: {"$ref": f"#/$defs/{other}", "default": {}} for other in names}}
        for name in names
    }
    schema = {"type": "object", "$defs": definitions, "properties": {"a": {"$ref": "#/$defs/d0", "default": {}}}}
    errors = refused(schema)
    assert errors[0]["location"].startswith("variables")
    assert str(MAX_DEFAULT_FILLS) in errors[0]["message"]


def test_a_value_nested_past_the_limit_is_named_before_validation_recurses_into_it() -> None:
    schema = {
        "type": "object",
        "$defs": {"n": {"type": "object", "properties": {"a": {"$ref": "#/$defs/n"}}}},
        "properties": {"a": {"$ref": "#/$defs/n"}},
    }
    version = compile_version(draft(schema).model_dump(mode="json"))
    deep: dict[str, Any] = {}
    for _ in range(MAX_VARIABLE_DEPTH - 1):
        deep = {"a": deep}
    assert check_variables(version, {"a": deep})["a"] == deep
    with pytest.raises(VariablesError) as caught:
        check_variables(version, {"a": [deep]})
    assert caught.value.errors == [{"variable": "a", "message": f"nests deeper than {MAX_VARIABLE_DEPTH} levels"}]


def test_a_schema_nested_past_the_limit_is_refused_before_the_metaschema_recurses_into_it() -> None:
    schema: dict[str, Any] = {"type": "object"}
    for _ in range(200):  # the metaschema check alone raised RecursionError past about 100 levels
        schema = {"type": "object", "properties": {"a": schema}}
    assert refused(schema) == [
        {"location": "variables", "message": f"the schema nests deeper than {MAX_SCHEMA_DEPTH} levels"}
    ]


# --- the routes: create and render answer 422 problem+json ---------------------------------------


def test_create_answers_422_naming_variables_for_a_remote_or_endless_ref(prompts_client: TestClient) -> None:
    for schema in (
        {"$ref": REMOTE},
        {"type": "object", "properties": {"a": {"$ref": "#/$defs/x"}}, "$defs": {"x": {"$ref": "#/$defs/x"}}},
    ):
        answer = prompts_client.post(
            "/v1/prompts", json={"name": "p", "type": "text", "template": "-", "variables": schema}
        )
        assert answer.status_code == 422, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert [e["location"] for e in answer.json()["errors"]] == ["variables"]
    assert prompts_client.get("/v1/prompts/p").status_code == 404


def test_create_and_render_of_a_self_referring_default_answer_without_a_5xx(prompts_client: TestClient) -> None:
    body = {"name": "p", "type": "text", "template": "{{ a }}", "variables": SELF_WITH_DEFAULT}
    assert prompts_client.post("/v1/prompts", json=body).status_code == 201
    answer = prompts_client.post("/v1/prompts/p/render", json={"version": 1})
    assert answer.status_code == 200, answer.text
    assert answer.json()["text"] == "{}"


def test_a_version_stored_before_these_checks_renders_a_422_not_a_500(prompts_client: TestClient) -> None:
    store: PromptStore = prompts_client.app.state.store
    for name, schema in (
        ("remote", {"type": "object", "properties": {"a": {"$ref": REMOTE}}}),
        (
            "endless",
            {"type": "object", "properties": {"a": {"$ref": "#/$defs/x"}}, "$defs": {"x": {"$ref": "#/$defs/x"}}},
        ),
    ):
        # Stored as an older service would have: the checks at create are what is being bypassed.
        anyio.run(store.create_prompt, name, "", draft(schema))
        answer = prompts_client.post(f"/v1/prompts/{name}/render", json={"version": 1, "variables": {"a": 1}})
        assert answer.status_code == 422, answer.text
        assert answer.headers["content-type"] == "application/problem+json"


# --- any schema the metaschema accepts: a 422 or an answer, never another exception -------------

REFS = st.sampled_from(["#", "#/$defs/x", "#/$defs/y", "#/properties/a", "#/$defs/missing", REMOTE, "#/$defs/x/0"])
DEFAULTS = st.one_of(st.just({}), st.just({"a": {}}), st.integers(0, 3), st.just("s"), st.just([]))


def _schemas(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    keyword = st.one_of(
        st.tuples(st.just("$ref"), REFS),
        st.tuples(st.just("$dynamicRef"), REFS),
        st.tuples(st.just("default"), DEFAULTS),
        st.tuples(st.just("type"), st.sampled_from(["object", "integer", "string", "array"])),
        st.tuples(st.just("properties"), st.dictionaries(st.sampled_from(["a", "b"]), children, max_size=2)),
        st.tuples(st.sampled_from(["allOf", "anyOf", "oneOf"]), st.lists(children, min_size=1, max_size=2)),
        st.tuples(st.sampled_from(["not", "items", "additionalProperties", "unevaluatedProperties"]), children),
        st.tuples(st.just("required"), st.lists(st.sampled_from(["a", "b"]), unique=True, max_size=2)),
        st.tuples(st.just("$dynamicAnchor"), st.just("x")),
    )
    return st.lists(keyword, max_size=4).map(dict)


SUBSCHEMAS = st.recursive(st.one_of(st.booleans(), st.just({})), _schemas, max_leaves=6)
ROOTS = st.tuples(_schemas(SUBSCHEMAS), st.dictionaries(st.sampled_from(["x", "y"]), SUBSCHEMAS, max_size=2)).map(
    lambda pair: {**pair[0], "$defs": pair[1]} if pair[1] else pair[0]
)
VALUES = st.recursive(
    st.one_of(st.integers(0, 3), st.just("s")),
    lambda inner: st.one_of(
        st.lists(inner, max_size=2), st.dictionaries(st.sampled_from(["a", "b"]), inner, max_size=2)
    ),
    max_leaves=5,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(schema=ROOTS, values=st.dictionaries(st.sampled_from(["a", "b"]), VALUES, max_size=2))
def test_any_valid_schema_is_accepted_or_refused_and_renders_or_is_refused(schema: dict, values: dict) -> None:
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError:
        return
    template = "{{ a | default('') }}"
    with contextlib.suppress(TemplateError):  # refused at create; a version stored before still renders
        validate_draft(draft(schema, template))
    version = compile_version(draft(schema, template).model_dump(mode="json"))
    declared = {name: value for name, value in values.items() if name in version.declared}
    with contextlib.suppress(VariablesError):
        check_variables(version, declared)
