"""Prompt templates: drafts that cannot render are refused; renders name the variable at fault."""

import pytest
from pydantic import ValidationError

from prompts.templates import (
    TemplateError,
    VariablesError,
    VersionDraft,
    check_variables,
    compile_version,
    render,
    validate_draft,
)

SCHEMA = {
    "type": "object",
    "properties": {"question": {"type": "string", "minLength": 1}, "top_k": {"type": "integer", "minimum": 1}},
    "required": ["question"],
}


def chat_draft(**overrides) -> VersionDraft:
    fields = {
        "type": "chat",
        "messages": [
            {"role": "system", "content": "Answer in at most {{ top_k | default(3) }} sentences."},
            {"role": "user", "content": "{{ question }}"},
        ],
        "variables": SCHEMA,
        "config": {"temperature": 0.2, "max_tokens": 256},
    }
    return VersionDraft(**{**fields, **overrides})


def compiled(draft: VersionDraft):
    validate_draft(draft)
    return compile_version(draft.model_dump(mode="json"))


def test_a_chat_prompt_renders_each_message_in_order() -> None:
    messages = render(compiled(chat_draft()), {"question": "What is Dapr?", "top_k": 2})
    assert messages == [
        {"role": "system", "content": "Answer in at most 2 sentences."},
        {"role": "user", "content": "What is Dapr?"},
    ]


def test_a_text_prompt_renders_as_one_user_message() -> None:
    draft = VersionDraft(
        type="text",
        template="Summarise:\n{{ text }}\n",
        variables={"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
    )
    assert render(compiled(draft), {"text": "a b c"}) == [{"role": "user", "content": "Summarise:\na b c\n"}]


def test_a_missing_variable_is_named() -> None:
    with pytest.raises(VariablesError) as caught:
        render(compiled(chat_draft()), {})
    assert caught.value.errors == [{"variable": "question", "message": "is required"}]


def test_a_mistyped_variable_is_named_with_the_reason() -> None:
    with pytest.raises(VariablesError) as caught:
        render(compiled(chat_draft()), {"question": "q", "top_k": "three"})
    assert caught.value.errors[0]["variable"] == "top_k"
    assert "integer" in caught.value.errors[0]["message"]


def test_a_template_variable_missing_from_the_schema_is_refused_at_creation() -> None:
    draft = chat_draft(messages=[{"role": "user", "content": "{{ question }} {{ context }}"}])
    with pytest.raises(TemplateError) as caught:
        validate_draft(draft)
    assert caught.value.errors == [
        {"location": "messages[0].content", "message": "variable `context` is used but not declared in `variables`"}
    ]


def test_template_syntax_errors_and_bad_schemas_are_refused_at_creation() -> None:
    with pytest.raises(TemplateError) as caught:
        validate_draft(chat_draft(messages=[{"role": "user", "content": "{{ question "}]))
    assert caught.value.errors[0]["location"] == "messages[0].content"
    with pytest.raises(TemplateError):
        validate_draft(chat_draft(variables={"type": "object", "properties": {"question": {"type": "nope"}}}))
    with pytest.raises(TemplateError):
        validate_draft(chat_draft(variables={"type": "array"}))


def test_the_sandbox_refuses_python_internals() -> None:
    draft = chat_draft(
        messages=[{"role": "user", "content": "{{ question.__class__.__mro__[1].__subclasses__() }}"}],
    )
    with pytest.raises(VariablesError) as caught:
        render(compiled(draft), {"question": "x"})
    assert caught.value.errors[0]["variable"] == "(template)"


def test_a_draft_must_fit_its_type_and_may_not_set_latest() -> None:
    with pytest.raises(ValidationError):
        VersionDraft(type="text", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(ValidationError):
        VersionDraft(type="chat", template="x")
    with pytest.raises(ValidationError):
        chat_draft(labels=["latest"])
    with pytest.raises(ValidationError):
        chat_draft(labels=["Not A Label"])
    with pytest.raises(ValidationError):
        chat_draft(config={"temperature": 5})
    assert chat_draft(labels=["production", "production"]).labels == ["production"]


def test_model_config_keeps_extra_generation_settings() -> None:
    draft = chat_draft(config={"temperature": 0.1, "presence_penalty": 0.5})
    assert draft.model_dump(mode="json", exclude_none=True)["config"] == {"temperature": 0.1, "presence_penalty": 0.5}


@pytest.mark.parametrize("label", ["2", "10", "007", "2x"])
def test_a_label_never_looks_like_a_version_number(label: str) -> None:
    with pytest.raises(ValidationError, match="starts with a lowercase letter"):
        chat_draft(labels=[label])


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"temperature": [0.5]}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"top_p": {"p": 1}}, "top_p"),
        ({"max_tokens": 2.5}, "max_tokens"),
        ({"seed": "seven"}, "seed"),
        ({"stop": "END"}, "stop"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"presence_penalty": 3}, "presence_penalty"),
        ({"frequency_penalty": float("nan")}, "frequency_penalty"),
        ({"temprature": 0.3}, "temprature"),
    ],
)
def test_a_config_value_of_the_wrong_type_or_range_or_name_is_refused_naming_it(config: dict, field: str) -> None:
    with pytest.raises(ValidationError) as refused:
        chat_draft(config=config)
    assert [error["loc"][:2] for error in refused.value.errors()][0] == ("config", field)


def test_a_variable_key_that_is_undeclared_not_an_identifier_or_too_long_is_named() -> None:
    """Keys were unchecked (only values met the schema and the guard): each bad one is named."""
    long_key = "k" * 65
    variables = {"question": "q", "topik": "typo", "a-b": 1, "1x": 2, "with space": 3, long_key: 4}
    with pytest.raises(VariablesError) as caught:
        render(compiled(chat_draft()), variables)
    assert caught.value.errors == [
        {"variable": "topik", "message": "is not a variable of this prompt version (declared: question, top_k)"},
        {"variable": "a-b", "message": "a variable name is a letter or _ followed by letters, digits or _"},
        {"variable": "1x", "message": "a variable name is a letter or _ followed by letters, digits or _"},
        {"variable": "with space", "message": "a variable name is a letter or _ followed by letters, digits or _"},
        {"variable": "k" * 64 + "…", "message": "a variable name is at most 64 characters"},
    ]


def test_platform_variables_fill_what_the_version_declares_and_are_never_refused() -> None:
    """The gateway offers `question` and `context` to every prompt: a version without `context` renders."""
    messages = render(compiled(chat_draft()), {}, {"question": "Why?", "context": "unused", "not-a-name": 1})
    assert messages[1] == {"role": "user", "content": "Why?"}
    # The caller's value wins over the platform's.
    assert render(compiled(chat_draft()), {"question": "Mine"}, {"question": "Theirs"})[1]["content"] == "Mine"


def test_a_draft_declaring_a_variable_no_template_can_name_is_refused() -> None:
    schema = {"type": "object", "properties": {"a-b": {"type": "string"}, "ok": {"type": "string"}}}
    with pytest.raises(TemplateError) as caught:
        validate_draft(chat_draft(variables=schema, messages=[{"role": "user", "content": "{{ ok }}"}]))
    assert caught.value.errors == [
        {
            "location": "variables.properties.a-b",
            "message": "a variable name is a letter or _ followed by letters, digits or _",
        }
    ]


# Found by a new-user trial: two nested loops of 99,999 (each under the sandbox's own range limit)
# held the prompts app at 100 % CPU and 6 GB until it was killed.
LOOP_BOMBS = [
    "{% for i in range(99999) %}{% for j in range(99999) %}a{% endfor %}{% endfor %}",
    # No output and no call inside: only the deadline stops it.
    "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}",
    # A macro that calls itself twice: exponential work.
    "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(60) }}",
]


@pytest.mark.parametrize("template", LOOP_BOMBS)
def test_a_runaway_template_is_a_422_within_its_time_limit(template: str) -> None:
    version = compiled(VersionDraft(type="text", template=template, variables={"type": "object", "properties": {}}))
    with pytest.raises(VariablesError) as caught:
        render(version, {})
    message = caught.value.errors[0]["message"]
    assert caught.value.errors[0]["variable"] == "(template)"
    assert message in {"the template ran past 2 s", "the rendered prompt is too long"}


@pytest.mark.parametrize(
    "template",
    ["{{ 'a' * 1000000000 }}", "{{ [1] * 1000000000 }}", "{{ 1000000000 * 'a' }}", "{{ 10 ** 100000000 }}"],
)
def test_a_single_huge_operation_is_refused_before_it_runs(template: str) -> None:
    version = compiled(VersionDraft(type="text", template=template, variables={"type": "object", "properties": {}}))
    with pytest.raises(VariablesError) as caught:
        render(version, {})
    assert caught.value.errors[0]["message"] == "the template tried an unsafe operation"


def test_small_repetitions_and_powers_still_render() -> None:
    no_variables = {"type": "object", "properties": {}}
    version = compiled(VersionDraft(type="text", template="{{ '-' * 3 }} {{ 2 ** 10 }}", variables=no_variables))
    assert render(version, {}) == [{"role": "user", "content": "--- 1024"}]


# --- variable defaults (JSON Schema's `default`) -----------------------------------------------

DEFAULTS = {
    "type": "object",
    "properties": {
        "topic": {"type": "string"},
        "lang": {"type": "string", "default": "English"},
        "style": {
            "type": "object",
            "default": {},
            "properties": {"tone": {"type": "string", "default": "warm"}, "words": {"type": "integer"}},
        },
    },
    "required": ["topic", "lang"],
}


def text_draft(schema: dict, template: str = "{{ topic }} in {{ lang }}, {{ style.tone }}") -> VersionDraft:
    return VersionDraft(type="text", template=template, variables=schema)


def test_a_variable_left_out_takes_its_default() -> None:
    assert render(compiled(text_draft(DEFAULTS)), {"topic": "rain"})[0]["content"] == "rain in English, warm"


def test_a_given_value_wins_over_the_default_at_every_level() -> None:
    variables = {"topic": "rain", "lang": "French", "style": {"tone": "dry"}}
    assert render(compiled(text_draft(DEFAULTS)), variables)[0]["content"] == "rain in French, dry"
    # A nested object given without the nested key still gets the nested default.
    variables = {"topic": "rain", "style": {"words": 3}}
    assert render(compiled(text_draft(DEFAULTS)), variables)[0]["content"] == "rain in English, warm"


def test_a_platform_variable_wins_over_the_default_and_the_caller_over_both() -> None:
    schema = {"type": "object", "properties": {"question": {"type": "string", "default": "none"}}}
    version = compiled(text_draft(schema, "{{ question }}"))
    assert render(version, {}) == [{"role": "user", "content": "none"}]
    assert render(version, {}, {"question": "from the gateway"})[0]["content"] == "from the gateway"
    assert render(version, {"question": "mine"}, {"question": "from the gateway"})[0]["content"] == "mine"


def test_defaults_behind_a_ref_are_filled_and_the_callers_values_are_not_changed() -> None:
    schema = {
        "type": "object",
        "$defs": {"style": {"type": "object", "properties": {"tone": {"type": "string", "default": "warm"}}}},
        "properties": {"topic": {"type": "string"}, "lang": {"type": "string"}, "style": {"$ref": "#/$defs/style"}},
    }
    given = {"topic": "rain", "lang": "Welsh", "style": {}}
    assert render(compiled(text_draft(schema)), given)[0]["content"] == "rain in Welsh, warm"
    assert given == {"topic": "rain", "lang": "Welsh", "style": {}}


def test_a_default_value_is_copied_so_no_render_shares_it() -> None:
    version = compiled(text_draft(DEFAULTS))
    first = check_variables(version, {"topic": "a"})
    first["style"]["tone"] = "changed"
    assert check_variables(version, {"topic": "b"})["style"] == {"tone": "warm"}


def test_a_default_its_schema_refuses_is_refused_when_the_version_is_made() -> None:
    schema = {
        "type": "object",
        "properties": {
            "lang": {"type": "string", "default": 3},
            "style": {"type": "object", "properties": {"tone": {"enum": ["warm", "dry"], "default": "loud"}}},
            "opts": {"type": "object", "default": {}, "required": ["n"], "properties": {"n": {"type": "integer"}}},
        },
    }
    with pytest.raises(TemplateError) as caught:
        validate_draft(text_draft(schema, "{{ lang }} {{ style }} {{ opts }}"))
    assert [e["location"] for e in caught.value.errors] == [
        "variables.properties.lang.default",
        "variables.properties.style.properties.tone.default",
        "variables.properties.opts.default",
    ]
    assert "3 is not of type 'string'" in caught.value.errors[0]["message"]


def test_a_default_that_fits_once_its_nested_defaults_are_filled_is_accepted() -> None:
    schema = {
        "type": "object",
        "properties": {
            "opts": {"type": "object", "default": {}, "required": ["n"], "properties": {"n": {"default": 1}}},
        },
    }
    validate_draft(text_draft(schema, "{{ opts.n }}"))
    assert render(compiled(text_draft(schema, "{{ opts.n }}")), {}) == [{"role": "user", "content": "1"}]
