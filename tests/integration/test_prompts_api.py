"""The prompts service through its real sidecar: versions, labels, render, cache and events."""

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from genai_platform.contracts.prompts import GROUNDING_INSTRUCTIONS
from harness import start_pair, wait_until
from prompts.schemas import CreatedPrompt, PromptHead, PromptVersion

BASE = "/v1.0/invoke/prompts/method/v1/prompts"
QA = {
    "type": "chat",
    "messages": [
        {"role": "system", "content": "You answer questions about {{ product }}."},
        {"role": "user", "content": "{{ question }}"},
    ],
    "variables": {
        "type": "object",
        "properties": {"product": {"type": "string"}, "question": {"type": "string", "minLength": 1}},
        "required": ["product", "question"],
    },
    "config": {"temperature": 0.2, "max_tokens": 128},
}


def unique(prefix: str = "qa") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def prompts(log_dir, secrets, default_broker):
    """One prompts app and sidecar for the module; each test works on prompts of its own (`unique`)."""
    service = start_pair("prompts", log_dir, secrets)
    yield service
    service.stop()


def create(dapr, name: str, **overrides) -> dict:
    response = dapr.post(BASE, json={"name": name, **QA, "labels": ["production"], **overrides})
    assert response.status_code == 201, response.text
    return response.json()


def add_version(dapr, name: str, system: str, **overrides) -> dict:
    body = {**QA, "messages": [{"role": "system", "content": system}, QA["messages"][1]], **overrides}
    response = dapr.post(f"{BASE}/{name}/versions", json=body)
    assert response.status_code == 201, response.text
    return response.json()


# The variables QA's versions render with.
RENDER = {"variables": {"product": "Dapr", "question": "q"}}


def cached_with_two_versions(dapr, name: str, second: str) -> None:
    """Prompt `name` with version 1 (`production`) and version 2 (system message `second`), its
    production render now in the service's cache."""
    create(dapr, name)
    add_version(dapr, name, second)
    assert dapr.post(f"{BASE}/{name}/render", json=RENDER).json()["version"] == 1


def test_create_version_label_and_render(prompts) -> None:
    name = unique()
    with prompts.sidecar.client() as dapr:
        created = create(dapr, name, commit_message="first cut")
        assert created["version"]["version"] == 1
        assert created["version"]["labels"] == ["latest", "production"]
        second = add_version(dapr, name, "Be brief about {{ product }}.", commit_message="shorter")
        assert (second["version"], second["labels"]) == (2, ["latest"])

        rendered = dapr.post(f"{BASE}/{name}/render", json={"variables": {"product": "Dapr", "question": "Why?"}})
        assert rendered.status_code == 200, rendered.text
        body = rendered.json()
        assert (body["version"], body["label"]) == (1, "production")  # production is served by default
        assert body["messages"][0] == {"role": "system", "content": "You answer questions about Dapr."}
        assert body["config"] == {"temperature": 0.2, "max_tokens": 128}

        latest = dapr.post(
            f"{BASE}/{name}/render", json={"label": "latest", "variables": {"product": "X", "question": "q"}}
        )
        assert latest.json()["version"] == 2
        assert dapr.get(f"{BASE}/{name}/versions/latest").json()["commit_message"] == "shorter"
        assert dapr.get(f"{BASE}/{name}/versions/1").json()["labels"] == ["production"]
        assert [v["version"] for v in dapr.get(f"{BASE}/{name}/versions").json()] == [1, 2]
        assert name in [p["name"] for p in dapr.get(BASE).json()]

        moved = dapr.put(f"{BASE}/{name}/labels/production", json={"version": 2})
        assert moved.status_code == 200 and moved.json()["labels"] == {"latest": 2, "production": 2}
        stale = dapr.put(f"{BASE}/{name}/labels/production", json={"version": 1, "expected_version": 1})
        assert stale.status_code == 409
        assert dapr.put(f"{BASE}/{name}/labels/latest", json={"version": 1}).status_code == 409
        assert dapr.put(f"{BASE}/{name}/labels/staging", json={"version": 9}).status_code == 404


def test_missing_or_mistyped_variables_are_a_422_naming_them(prompts) -> None:
    name = unique()
    with prompts.sidecar.client() as dapr:
        create(dapr, name)
        missing = dapr.post(f"{BASE}/{name}/render", json={"variables": {"product": "Dapr"}})
        assert missing.status_code == 422
        assert missing.headers["content-type"] == "application/problem+json"
        assert missing.json()["errors"] == [
            {"location": "body.variables.question", "variable": "question", "message": "is required"}
        ]
        mistyped = dapr.post(f"{BASE}/{name}/render", json={"variables": {"product": 7, "question": "q"}})
        assert mistyped.status_code == 422 and mistyped.json()["errors"][0]["variable"] == "product"
        # Keys are checked too: one the version does not declare, or that no template can name.
        keys = {"product": "Dapr", "question": "q", "topik": 1, "a-b": 2}
        undeclared = dapr.post(f"{BASE}/{name}/render", json={"variables": keys})
        assert undeclared.status_code == 422
        assert [(e["location"], e["message"]) for e in undeclared.json()["errors"]] == [
            ("body.variables.topik", "is not a variable of this prompt version (declared: product, question)"),
            ("body.variables.a-b", "a variable name is a letter or _ followed by letters, digits or _"),
        ]
        # A platform's variables fill what the version declares and are never refused.
        offered = {"question": "How?", "context": "not declared here"}
        rendered = dapr.post(
            f"{BASE}/{name}/render", json={"variables": {"product": "Dapr"}, "platform_variables": offered}
        )
        assert rendered.status_code == 200, rendered.text
        assert rendered.json()["messages"][-1]["content"].endswith("How?")
        assert dapr.post(f"{BASE}/{unique()}/render", json={"variables": {}}).status_code == 404


def test_a_variable_left_out_takes_its_declared_default_and_a_given_value_wins(prompts) -> None:
    name = unique()
    variables = {
        "type": "object",
        "properties": {
            "topic": {"type": "string"},
            "lang": {"type": "string", "default": "English"},
            "question": {"type": "string", "default": "What else?"},
        },
        "required": ["topic"],
    }
    messages = [{"role": "user", "content": "Write about {{ topic }} in {{ lang }}. {{ question }}"}]
    with prompts.sidecar.client() as dapr:
        create(dapr, name, messages=messages, variables=variables)
        rendered = dapr.post(f"{BASE}/{name}/render", json={"variables": {"topic": "rain"}})
        assert rendered.status_code == 200, rendered.text
        assert rendered.json()["messages"][0]["content"] == "Write about rain in English. What else?"
        given = {"variables": {"topic": "rain", "lang": "French"}}
        assert dapr.post(f"{BASE}/{name}/render", json=given).json()["messages"][0]["content"] == (
            "Write about rain in French. What else?"
        )
        # The gateway's chat path renders with platform variables: they win over a default too.
        chat = {"variables": {"topic": "rain"}, "platform_variables": {"question": "Why?", "context": "x"}}
        assert dapr.post(f"{BASE}/{name}/render", json=chat).json()["messages"][0]["content"] == (
            "Write about rain in English. Why?"
        )
        # A default its own schema refuses is refused with the version, never at render time.
        bad = {**variables, "properties": {**variables["properties"], "lang": {"type": "string", "default": 3}}}
        refused = dapr.post(f"{BASE}/{name}/versions", json={**QA, "messages": messages, "variables": bad})
        assert refused.status_code == 422, refused.text
        assert [e["location"] for e in refused.json()["errors"]] == ["variables.properties.lang.default"]
        assert dapr.get(f"{BASE}/{name}").json()["latest"] == 1


def test_a_schema_referring_to_itself_or_elsewhere_is_a_422_or_renders_never_a_500(prompts) -> None:
    name = unique()
    text = {"type": "text", "template": "{{ a }}"}
    with prompts.sidecar.client() as dapr:
        for variables in (
            {"type": "object", "properties": {"a": {"$ref": "https://example.com/s.json", "default": {}}}},
            {"type": "object", "properties": {"a": {"$ref": "#/$defs/x"}}, "$defs": {"x": {"$ref": "#/$defs/x"}}},
        ):
            refused = dapr.post(BASE, json={"name": name, **text, "variables": variables})
            assert refused.status_code == 422, refused.text
            assert refused.headers["content-type"] == "application/problem+json"
            assert [e["location"] for e in refused.json()["errors"]] == ["variables"]
        itself = {"type": "object", "properties": {"a": {"$ref": "#", "default": {}}}}
        assert dapr.post(BASE, json={"name": name, **text, "variables": itself}).status_code == 201
        rendered = dapr.post(f"{BASE}/{name}/render", json={"version": 1})
        assert rendered.status_code == 200, rendered.text
        assert rendered.json()["text"] == "{}"


def test_bad_input_is_refused_and_nothing_is_written(prompts) -> None:
    name = unique()
    with prompts.sidecar.client() as dapr:
        bad_template = {**QA, "messages": [{"role": "user", "content": "{{ question } }} {{ undeclared }}"}]}
        refused = dapr.post(BASE, json={"name": name, **bad_template})
        assert refused.status_code == 422 and refused.headers["content-type"] == "application/problem+json"
        assert dapr.get(f"{BASE}/{name}").status_code == 404
        assert dapr.post(BASE, json={"name": "Bad Name!", **QA}).status_code == 422
        create(dapr, name)
        assert dapr.post(BASE, json={"name": name, **QA}).status_code == 409
        assert dapr.post(f"{BASE}/{name}/versions", json={**QA, "variables": {"type": "string"}}).status_code == 422
        assert dapr.get(f"{BASE}/{name}").json()["latest"] == 1


def test_concurrent_label_moves_and_version_creations_lose_nothing(start_app, profile) -> None:
    prompts = start_app("prompts", profile)
    prompts.wait_ready()
    name = unique()
    with prompts.sidecar.client() as dapr:
        create(dapr, name)
        add_version(dapr, name, "v2 about {{ product }}")

    def move(label: str, version: int) -> int:
        with prompts.sidecar.client() as dapr:
            return dapr.put(f"{BASE}/{name}/labels/{label}", json={"version": version}).status_code

    def new_version(n: int) -> int:
        with prompts.sidecar.client() as dapr:
            return add_version(dapr, name, f"v{n} about {{{{ product }}}}")["version"]

    with ThreadPoolExecutor(4) as pool:
        for round_ in range(5):
            labels = [f"a{round_}", f"b{round_}", f"c{round_}", f"d{round_}"]
            assert list(pool.map(move, labels, [1, 2, 1, 2])) == [200] * 4
        numbers = list(pool.map(new_version, range(3, 7)))  # texts unlike v2: identical ones add nothing
    assert sorted(numbers) == [3, 4, 5, 6]
    with prompts.sidecar.client() as dapr:
        head = dapr.get(f"{BASE}/{name}").json()
    assert head["latest"] == 6 and head["labels"]["latest"] == 6
    # Every one of the 20 concurrent moves survived: none overwrote another's head.
    assert {label: head["labels"][label] for label in head["labels"] if label[0] in "abcd"} == {
        f"{letter}{r}": (1 if letter in "ac" else 2) for r in range(5) for letter in "abcd"
    }


def test_prompt_updated_drops_the_render_cache(prompts, start_app, default_broker) -> None:
    monitor = start_app("monitor", default_broker)
    monitor.wait_ready()
    name = unique()
    with prompts.sidecar.client() as dapr:
        cached_with_two_versions(dapr, name, "second")

        # Move the label behind the service's back, straight in its state: the cache still answers v1.
        key = f"prompt:{name}"
        stored = dapr.get(f"/v1.0/state/statestore/{key}")
        head, etag = stored.json(), stored.headers["etag"]  # the service writes with ETags only
        moved = {**head, "labels": {**head["labels"], "production": 2}}
        saved = dapr.post("/v1.0/state/statestore", json=[{"key": key, "value": moved, "etag": etag}])
        assert saved.status_code == 204, saved.text
        assert dapr.post(f"{BASE}/{name}/render", json=RENDER).json()["version"] == 1

        # Another replica would announce the change like this; the subscriber drops the entry.
        moved_elsewhere = {"name": name, "action": "label.moved", "version": 2, "labels": moved["labels"]}
        published = dapr.post("/v1.0/publish/pubsub/prompt.updated", json=moved_elsewhere)
        assert published.status_code == 204
        wait_until(
            lambda: dapr.post(f"{BASE}/{name}/render", json=RENDER).json()["version"] == 2,
            what="the render cache to drop the prompt",
            watch=prompts.processes,
        )

        # The service announces its own changes on prompt.updated.
        assert dapr.put(f"{BASE}/{name}/labels/staging", json={"version": 1}).status_code == 200

    # The monitor also sees the event this test published above (version 2, and it may arrive
    # after the service's): wait for the one that moved `staging` to version 1.
    def announced() -> dict | None:
        with monitor.sidecar.client() as dapr:
            seen = dapr.get("/v1.0/invoke/monitor/method/v1/events", params={"topic": "prompt.updated"}).json()
        ours = ({**e["data"], "source": e["source"]} for e in seen if e["data"]["name"] == name)
        return next((e for e in ours if e.get("action") == "label.moved" and e.get("version") == 1), None)

    event = wait_until(announced, what="prompt.updated at the monitor", watch=monitor.processes)
    assert event["source"] == "prompts" and event["labels"] == {"latest": 2, "production": 2, "staging": 1}


def test_a_deleted_prompt_is_gone_and_its_version_numbers_are_never_given_again(prompts) -> None:
    name = unique()
    with prompts.sidecar.client() as dapr:
        cached_with_two_versions(dapr, name, "second about {{ product }}")

        deleted = dapr.delete(f"{BASE}/{name}")
        assert (deleted.status_code, deleted.content) == (204, b"")
        for gone in (
            dapr.get(f"{BASE}/{name}"),
            dapr.get(f"{BASE}/{name}/versions"),
            dapr.get(f"{BASE}/{name}/versions/1"),
            dapr.post(f"{BASE}/{name}/render", json=RENDER),  # not from the cache either
            dapr.post(f"{BASE}/{name}/versions", json=QA),
            dapr.put(f"{BASE}/{name}/labels/staging", json={"version": 1}),
            dapr.delete(f"{BASE}/{name}"),
        ):
            assert gone.status_code == 404, gone.text
            assert gone.headers["content-type"] == "application/problem+json"
            assert name in gone.json()["detail"]
        assert name not in [head["name"] for head in dapr.get(BASE).json()]
        # Its versions' text is gone from the state store, not only from the API.
        for number in (1, 2):
            assert dapr.get(f"/v1.0/state/statestore/prompt:{name}:v:{number}").status_code == 204

        # Created again, the name numbers on from the deleted prompt's last version.
        again = create(dapr, name, commit_message="again")
        assert again["prompt"]["first"] == 3 and again["version"]["version"] == 3
        assert again["prompt"]["labels"] == {"latest": 3, "production": 3}
        assert PromptHead.model_validate(again["prompt"]).first == 3
        assert [v["version"] for v in dapr.get(f"{BASE}/{name}/versions").json()] == [3]
        assert dapr.get(f"{BASE}/{name}/versions/1").status_code == 404
        assert add_version(dapr, name, "fourth about {{ product }}")["version"] == 4
        assert dapr.post(f"{BASE}/{name}/render", json=RENDER).json()["version"] == 3
        assert name in [head["name"] for head in dapr.get(BASE).json()]


def test_a_delete_racing_new_versions_never_lets_a_number_stand_for_two_texts(prompts) -> None:
    name = unique()
    with prompts.sidecar.client() as dapr:
        create(dapr, name)

    def new_version(n: int) -> tuple[int, int | None]:
        body = {**QA, "messages": [{"role": "system", "content": f"v{n} about {{{{ product }}}}"}, QA["messages"][1]]}
        with prompts.sidecar.client() as dapr:
            response = dapr.post(f"{BASE}/{name}/versions", json=body)
        return response.status_code, response.json().get("version") if response.status_code == 201 else None

    def delete(_: int) -> tuple[int, None]:
        with prompts.sidecar.client() as dapr:
            return dapr.delete(f"{BASE}/{name}").status_code, None

    with ThreadPoolExecutor(5) as pool:
        outcomes = list(
            pool.map(
                lambda job: job[0](job[1]),
                [(new_version, 2), (new_version, 3), (delete, 0), (new_version, 4), (new_version, 5)],
            )
        )
    # Each call either landed or found no prompt; none failed.
    assert {status for status, _ in outcomes} <= {201, 204, 404}, outcomes
    assert outcomes[2][0] == 204
    given = [number for status, number in outcomes if status == 201 and number is not None]
    with prompts.sidecar.client() as dapr:
        assert dapr.get(f"{BASE}/{name}").status_code == 404
        again = create(dapr, name)
    assert again["version"]["version"] > max([1, *given]), (again["version"], outcomes)

    # Creates racing deletes of one name: a create either made the prompt or found it there or
    # deleted under it (409), never a 404 (a new-user trial saw 8 of 52 creates answer 404).
    raced = unique()

    def create_or_delete(create_it: bool) -> tuple[str, int]:
        with prompts.sidecar.client() as dapr:
            if create_it:
                return "create", dapr.post(BASE, json={"name": raced, **QA}).status_code
            return "delete", dapr.delete(f"{BASE}/{raced}").status_code

    with ThreadPoolExecutor(6) as pool:
        statuses = [s for _ in range(4) for s in pool.map(create_or_delete, [True, False, True, False, True, False])]
    assert {code for kind, code in statuses if kind == "create"} <= {201, 409}, statuses
    assert {code for kind, code in statuses if kind == "delete"} <= {204, 404}, statuses


def test_the_rag_prompt_is_seeded_before_the_service_is_ready(prompts) -> None:
    """The gateway's grounded answers need `rag-answer`: it renders the built-in grounding with no setup."""
    context = "[1] Handbook: The launch site is Kourou."
    with prompts.sidecar.client() as dapr:
        rendered = dapr.post(
            f"{BASE}/rag-answer/render", json={"variables": {"question": "Where?", "context": context}}
        )
        assert rendered.status_code == 200, rendered.text
        body = rendered.json()
        assert body["label"] == "production" and body["type"] == "chat"
        assert "text" not in body  # only text prompts answer `text`
        assert body["messages"] == [
            {"role": "system", "content": GROUNDING_INSTRUCTIONS + context},
            {"role": "user", "content": "Where?"},
        ]


def test_answers_are_the_shapes_the_openapi_document_declares(prompts) -> None:
    name = unique()
    with prompts.sidecar.client() as dapr:
        answers = [(CreatedPrompt, create(dapr, name, commit_message="first"))]
        add_version(dapr, name, "second")
        moved = dapr.put(f"{BASE}/{name}/labels/staging", json={"version": 1})
        answers += [
            (PromptHead, moved.json()),
            (PromptHead, dapr.get(f"{BASE}/{name}").json()),
            (PromptVersion, dapr.get(f"{BASE}/{name}/versions/staging").json()),
            *[(PromptVersion, version) for version in dapr.get(f"{BASE}/{name}/versions").json()],
            *[(PromptHead, head) for head in dapr.get(BASE).json()],
        ]
    # A field the model lacks is dropped by the round trip, one it requires fails it: both show.
    for model, answer in answers:
        assert model.model_validate(answer).model_dump(mode="json", exclude_unset=True) == answer, model.__name__


def test_a_number_is_a_version_and_a_label_is_never_a_number(prompts) -> None:
    """Issue 11 input 15: a label named `2` would shadow version 2; it is refused, and `2` is version 2."""
    name = unique()
    variables = {"product": "Dapr", "question": "q"}
    with prompts.sidecar.client() as dapr:
        create(dapr, name)
        add_version(dapr, name, "second about {{ product }}")
        for label in ("2", "10"):
            refused = dapr.put(f"{BASE}/{name}/labels/{label}", json={"version": 1})
            assert refused.status_code == 422, refused.text
            assert [e["location"] for e in refused.json()["errors"]] == ["path.label"]
        refused = dapr.post(f"{BASE}/{name}/versions", json={**QA, "labels": ["2"]})
        assert refused.status_code == 422 and refused.json()["errors"][0]["location"] == "body.labels"
        assert dapr.post(f"{BASE}/{name}/render", json={"label": "2", "variables": variables}).status_code == 422

        by_number = dapr.post(f"{BASE}/{name}/render", json={"version": 2, "variables": variables}).json()
        assert (by_number["version"], by_number["label"]) == (2, None)
        assert dapr.get(f"{BASE}/{name}/versions/2").json()["version"] == 2
        # The render cache follows a label move made through the API (this replica drops at once).
        assert dapr.post(f"{BASE}/{name}/render", json={"variables": variables}).json()["version"] == 1
        assert dapr.put(f"{BASE}/{name}/labels/production", json={"version": 2}).status_code == 200
        moved = dapr.post(f"{BASE}/{name}/render", json={"label": "production", "variables": variables}).json()
        assert (moved["version"], moved["label"]) == (2, "production")
        assert dapr.post(f"{BASE}/{name}/render", json={"version": 1, "variables": variables}).json()["version"] == 1


def test_a_config_value_of_the_wrong_type_is_a_422_naming_the_field(prompts) -> None:
    """Issue 11 input 18: `temperature` as a list (and the like) is refused, and nothing is written."""
    name = unique()
    with prompts.sidecar.client() as dapr:
        for config, field in (
            ({"temperature": [0.2]}, "temperature"),
            ({"max_tokens": "many"}, "max_tokens"),
            ({"max_tokens": 1_000_000}, "max_tokens"),  # over MAX_COMPLETION_TOKENS (a new-user trial's value)
            ({"stop": [1, 2]}, "stop"),
            ({"top_k": 5}, "top_k"),
        ):
            refused = dapr.post(BASE, json={"name": name, **QA, "config": config})
            assert refused.status_code == 422, refused.text
            assert refused.headers["content-type"] == "application/problem+json"
            locations = [e["location"] for e in refused.json()["errors"]]
            assert all(location.startswith(f"body.config.{field}") for location in locations), locations
        assert dapr.get(f"{BASE}/{name}").status_code == 404
        create(dapr, name)
        refused = dapr.post(f"{BASE}/{name}/versions", json={**QA, "config": {"temperature": [1, 2]}})
        assert refused.status_code == 422 and refused.json()["errors"][0]["location"] == "body.config.temperature"
        assert dapr.get(f"{BASE}/{name}").json()["latest"] == 1


# Control characters never reach an app: daprd 1.18 refuses them in an invoked method
# (dapr/dapr#10409) and the gateway refuses them first (tests/integration/test_gateway_api.py).
@pytest.mark.parametrize("raw", ["caf%C3%A9", "a%20b", "%E2%80%AEx", "Upper"])
def test_non_ascii_and_other_characters_in_a_path_are_a_422_naming_the_parameter(prompts, raw: str) -> None:
    """Issue 11 input 16, on every prompts route: nothing reaches a state key."""
    name = unique()
    with prompts.sidecar.client() as dapr:
        create(dapr, name)
        calls = [
            ("GET", f"{BASE}/{raw}", None, "name"),
            ("GET", f"{BASE}/{raw}/versions", None, "name"),
            ("POST", f"{BASE}/{raw}/versions", QA, "name"),
            ("GET", f"{BASE}/{name}/versions/{raw}", None, "ref"),
            ("PUT", f"{BASE}/{name}/labels/{raw}", {"version": 1}, "label"),
            ("DELETE", f"{BASE}/{name}/labels/{raw}", None, "label"),
            ("POST", f"{BASE}/{raw}/render", {"variables": {}}, "name"),
        ]
        for method, path, body, parameter in calls:
            response = dapr.request(method, path, json=body)
            assert response.status_code == 422, (method, path, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            assert f"path.{parameter}" in [e["location"] for e in response.json()["errors"]], response.text
