"""Every topic has a payload model and a contract that the code and docs/events.md agree with."""

import re
from pathlib import Path

import pytest
import yaml

from genai_platform import catalogue
from genai_platform.events import CONTRACTS, ModelPromoted, Payload, Topic
from genai_platform.subscriptions import Subscriptions

ROOT = Path(__file__).resolve().parents[2]
# A topic with no payload of its own: the dead-letter topic carries other topics' messages.
NO_PAYLOAD = {Topic.DEAD_LETTER}


@pytest.mark.parametrize("topic", list(Topic))
def test_every_topic_has_a_contract_and_a_payload_model(topic: Topic) -> None:
    contract = CONTRACTS.get(topic)
    assert contract is not None, f"{topic} has no entry in genai_platform.events.CONTRACTS"
    assert contract.topic is topic
    if topic in NO_PAYLOAD:
        assert contract.payload is None
    else:
        assert contract.payload is not None and issubclass(contract.payload, Payload), f"{topic} has no model"
    assert contract.consumers, f"{topic} has no consumer"


def test_the_committed_catalogue_is_up_to_date() -> None:
    committed = (ROOT / "docs" / "events.md").read_text()
    assert committed == catalogue.render(), "docs/events.md is stale: run `uv run python -m genai_platform.catalogue`"


def test_the_catalogue_lists_every_field_of_every_payload() -> None:
    text = catalogue.render()
    for contract in CONTRACTS.values():
        assert f"## {contract.topic}" in text or contract.payload is None
        for name in contract.payload.model_fields if contract.payload else ():
            assert f"| `{name}` |" in text, f"{contract.topic}.{name} missing from the catalogue"


PUBLISH = re.compile(r"publish(?:_many)?\(\s*(?:str\()?Topic\.([A-Z_]+)")


def published_by_code() -> dict[Topic, set[str]]:
    """Which apps' sources publish which topics (`publish(Topic.X` / `publish_many(Topic.X`)."""
    found: dict[Topic, set[str]] = {}
    for source in (ROOT / "apps").glob("*/src/**/*.py"):
        app = source.relative_to(ROOT / "apps").parts[0]
        for name in PUBLISH.findall(source.read_text()):
            found.setdefault(Topic[name], set()).add(app)
    return found


def test_declared_producers_are_the_apps_that_publish() -> None:
    published = published_by_code()
    for topic, contract in CONTRACTS.items():
        apps = {producer for producer in contract.producers if (ROOT / "apps" / producer).is_dir()}
        assert apps == published.get(topic, set()), f"{topic}: CONTRACTS says {apps}, code publishes from {published}"


def test_model_promoted_carries_the_registry_version_number() -> None:
    # The registry sends its version number as an int; a number sent as text is read the same.
    assert ModelPromoted.model_validate({"model": "m", "version": "3"}).version == 3
    assert ModelPromoted.model_validate({"model": "m", "version": 3}).model_dump(mode="json")["version"] == 3
    with pytest.raises(ValueError, match="names `model`, `path` or both"):
        ModelPromoted.model_validate({"version": 3})


def app_subscriptions() -> dict[str, Subscriptions]:
    """Each subscribing app's declared `Subscriptions` (what its /dapr/subscribe lists)."""
    import features.routes  # noqa: PLC0415 - each app's modules, imported only for these tests
    import inference.promotion  # noqa: PLC0415
    import ingestion.routes  # noqa: PLC0415
    import monitor.app  # noqa: PLC0415
    import prompts.routes  # noqa: PLC0415

    return {
        "features": features.routes.subscriptions,
        "inference": inference.promotion.subscriptions,
        "ingestion": ingestion.routes.subscriptions,
        "monitor": monitor.app.subscriptions,
        "prompts": prompts.routes.subscriptions,
    }


def test_declared_consumers_are_the_apps_that_subscribe() -> None:
    subscribed = {app: subscriptions.topics for app, subscriptions in app_subscriptions().items()}
    for topic, contract in CONTRACTS.items():
        apps = {app for app, topics in subscribed.items() if topic in topics}
        assert apps == set(contract.consumers), f"{topic}: CONTRACTS says {contract.consumers}, apps subscribe: {apps}"


def test_only_apps_with_declared_subscriptions_serve_dapr_subscribe() -> None:
    # Every /dapr/subscribe comes from genai_platform.subscriptions; none is written by hand.
    handwritten = [
        source.relative_to(ROOT)
        for source in (ROOT / "apps").glob("*/src/**/*.py")
        if '"/dapr/subscribe"' in source.read_text()
    ]
    assert handwritten == []


def test_the_clusters_declarative_subscriptions_match_the_apps_declared_ones() -> None:
    apps = app_subscriptions()
    documents = list(yaml.safe_load_all((ROOT / "k8s/base/dapr/subscriptions.yaml").read_text()))
    assert documents
    for document in documents:
        (app,) = document["scopes"]
        spec = document["spec"]
        declared = [d for d in apps[app].declarations(spec["pubsubname"]) if d["topic"] == spec["topic"]]
        assert len(declared) == 1, f"{app} declares no subscription to {spec['topic']}"
        assert (spec["routes"]["default"], spec.get("deadLetterTopic")) == (
            declared[0]["route"],
            declared[0].get("deadLetterTopic"),
        ), f"k8s Subscription {document['metadata']['name']} differs from {app}'s declared subscription"
