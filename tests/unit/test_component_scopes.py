"""Every profile's pub/sub carries the topic scopes that genai_platform.events.CONTRACTS implies, and
no state store is open to an app that keeps no state (local profiles and their cluster copies)."""

from pathlib import Path

import pytest
import yaml

from genai_platform.events import CONTRACTS, Topic

ROOT = Path(__file__).resolve().parents[2]
CANDIDATES = [
    ROOT / "components",
    *sorted((ROOT / "components" / "profiles").iterdir()),
    *sorted((ROOT / "k8s" / "components").iterdir()),
]
# The folders of Dapr components (a profile, local or for a cluster), not kustomize's other ones.
FOLDERS = [f for f in CANDIDATES if f.is_dir() and any("dapr.io/" in p.read_text() for p in f.glob("*.yaml"))]
# Unrestricted on purpose (components/pubsub.yaml says why).
UNSCOPED_PUBLISHERS = {"monitor", "inference"}
STATELESS = {"guard", "inference"}


def component(folder: Path, name: str) -> dict:
    for path in sorted(folder.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if (
                isinstance(doc, dict)
                and str(doc.get("apiVersion", "")).startswith("dapr.io/")
                and doc.get("kind") == "Component"
                and doc["metadata"]["name"] == name
            ):
                return doc
    raise LookupError(f"no component {name} in {folder}")


def expected_publishing_scopes(apps: list[str]) -> dict[str, set[str]]:
    scopes = {}
    for app in apps:
        if app in UNSCOPED_PUBLISHERS:
            continue
        topics = {str(c.topic) for c in CONTRACTS.values() if app in c.producers or not c.producers}
        if any(app in c.consumers for c in CONTRACTS.values()):
            topics.add(str(Topic.DEAD_LETTER))  # the subscriber's sidecar publishes spent messages there
        scopes[app] = topics
    return scopes


def parse_scopes(value: str) -> dict[str, set[str]]:
    """Dapr's `app1=topic1,topic2;app2=topic3` (dapr/pkg/scopes GetScopedTopics)."""
    parsed = {}
    for entry in value.split(";"):
        app, _, topics = entry.partition("=")
        parsed[app] = set(topics.split(","))
    return parsed


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda f: str(f.relative_to(ROOT)))
def test_publishing_scopes_follow_the_contracts(folder: Path) -> None:
    pubsub = component(folder, "pubsub")
    metadata = {item["name"]: item.get("value") for item in pubsub["spec"]["metadata"]}
    assert "publishingScopes" in metadata, f"{folder}: pubsub has no publishingScopes"
    assert parse_scopes(metadata["publishingScopes"]) == expected_publishing_scopes(pubsub["scopes"])


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda f: str(f.relative_to(ROOT)))
def test_no_state_store_is_open_to_a_stateless_app(folder: Path) -> None:
    assert STATELESS.isdisjoint(component(folder, "statestore")["scopes"])
