"""Every topic has a payload model and a contract that the code and docs/events.md agree with."""

import re
from pathlib import Path

import pytest

from genai_platform import catalogue
from genai_platform.events import CONTRACTS, ModelPromoted, Payload, Topic

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


def declared_subscriptions() -> dict[str, set[str]]:
    """The topics each app subscribes to, from its declared `Subscriptions` (what /dapr/subscribe lists)."""
    import features.routes  # noqa: PLC0415 - each app's modules, imported only for this test
    import inference.promotion  # noqa: PLC0415
    import ingestion.routes  # noqa: PLC0415
    import monitor.app  # noqa: PLC0415
    import prompts.routes  # noqa: PLC0415

    modules = {
        "features": features.routes,
        "inference": inference.promotion,
        "ingestion": ingestion.routes,
        "monitor": monitor.app,
        "prompts": prompts.routes,
    }
    return {app: module.subscriptions.topics for app, module in modules.items()}


def test_declared_consumers_are_the_apps_that_subscribe() -> None:
    subscribed = declared_subscriptions()
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
