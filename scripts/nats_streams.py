"""Declare one JetStream stream per platform topic on the local NATS server (idempotent).

Dapr's `pubsub.jetstream` component creates consumers, never streams: a publish to a subject no
stream captures fails with "no responders". And its `durableName` is one name for every
subscription of an app, while a consumer name is unique per stream; so each topic gets a stream
of its own (subject = the topic, name = the topic with `.` as `_`), and each app one durable
consumer per stream (`durableName: "{appID}"` in components/profiles/nats-postgres/pubsub.yaml).

Topics come from `genai_platform.events.Topic` (the one list of topics) plus any given on the
command line. Run by `scripts/infra.sh start nats` on every start, so a new topic gets its stream.

It also brings the apps' durable consumers (named after an app-id of dapr.yaml) in line with the
component (`--component`, the nats-postgres profile's pubsub.yaml): nats.go, inside daprd, refuses
to subscribe through an existing consumer whose `ackWait`, `maxDeliver` or `maxAckPending`
differ from the component's ("consumer name already in use"), and Dapr retries that forever while
the app looks healthy. A consumer left by an earlier run with other values (a test's shorter
windows, an edited component) would so stop an app from ever receiving. These three settings are
updated in place on the server (the consumer keeps its position); a consumer whose deliver or ack
policy differs cannot be updated and is reported (exit 1) with the command that deletes it.

    uv run --frozen --no-sync python scripts/nats_streams.py [--url nats://127.0.0.1:4222] [TOPIC...]

Exits 1 with the server's error when a stream cannot be created or updated.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from dataclasses import replace
from pathlib import Path

import nats
import yaml
from nats.errors import Error as NatsError
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import APIError, NotFoundError

from genai_platform.events import Topic

ROOT = Path(__file__).resolve().parents[1]
# Limits as the Redis profile's (maxLenApprox 100000) and the stores' 7-day retention elsewhere.
MAX_MESSAGES = 100_000
MAX_AGE_S = 7 * 24 * 3600.0
# Publishes with the same CloudEvent id (Dapr sets it as Nats-Msg-Id) inside this window are
# stored once: a publisher's retry after a lost acknowledgement does not duplicate the event.
DUPLICATE_WINDOW_S = 120.0


def stream_name(topic: str) -> str:
    """`documents.submit` -> `documents_submit` (stream names may not hold `.`, `*`, `>`)."""
    return topic.replace(".", "_")


def config_for(topic: str) -> StreamConfig:
    return StreamConfig(
        name=stream_name(topic),
        subjects=[topic],
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        discard=DiscardPolicy.OLD,
        max_msgs=MAX_MESSAGES,
        max_age=MAX_AGE_S,
        duplicate_window=DUPLICATE_WINDOW_S,
        num_replicas=1,
    )


DEFAULT_COMPONENT = ROOT / "components" / "profiles" / "nats-postgres" / "pubsub.yaml"


def go_seconds(duration: str) -> float:
    """A Go duration of one unit as the component writes them (`180s`, `3m`, `500ms`) in seconds."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration.strip())
    if match is None:
        raise ValueError(f"unsupported duration {duration!r}")
    return float(match[1]) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[match[2]]


def wanted_consumer(component: Path) -> dict[str, object]:
    """The consumer settings daprd's pubsub.jetstream asks for, from the component's metadata:
    `ack_wait` (s), `max_deliver`, `max_ack_pending`, `deliver_policy`, `ack_policy`."""
    document = yaml.safe_load(component.read_text())
    metadata = {item["name"]: str(item.get("value", "")) for item in document["spec"]["metadata"]}
    wanted: dict[str, object] = {
        "deliver_policy": DeliverPolicy(metadata.get("deliverPolicy", "all")),
        "ack_policy": AckPolicy(metadata.get("ackPolicy", "explicit")),
    }
    if "ackWait" in metadata:
        wanted["ack_wait"] = go_seconds(metadata["ackWait"])
    if "maxDeliver" in metadata:
        wanted["max_deliver"] = int(metadata["maxDeliver"])
    if "maxAckPending" in metadata:
        wanted["max_ack_pending"] = int(metadata["maxAckPending"])
    return wanted


def app_ids() -> set[str]:
    """The platform's app-ids (dapr.yaml): the durable consumer names of `durableName: "{appID}"`."""
    return {app["appID"] for app in yaml.safe_load((ROOT / "dapr.yaml").read_text())["apps"]}


class ConsumerMismatch(Exception):
    """A durable consumer whose deliver or ack policy differs from the component's."""


def consumer_update(config: ConsumerConfig, wanted: dict[str, object]) -> ConsumerConfig | None:
    """The config to send so `config` matches `wanted`, or None when it already does.

    Raises ConsumerMismatch when a policy differs: the server cannot update those.
    """
    for fixed in ("deliver_policy", "ack_policy"):
        if getattr(config, fixed) != wanted[fixed]:
            raise ConsumerMismatch(f"{fixed} is {getattr(config, fixed)}, the component wants {wanted[fixed]}")
    changes = {
        name: value
        for name, value in wanted.items()
        if name not in ("deliver_policy", "ack_policy") and getattr(config, name) != value
    }
    return replace(config, **changes) if changes else None


async def declare(url: str, token: str, topics: list[str], consumers: dict[str, object] | None = None) -> list[str]:
    """Create or update each topic's stream, and (given `consumers`, as `wanted_consumer` returns
    it) the apps' durable consumers on it; returns the names of the streams and consumers changed.

    Raises ConsumerMismatch naming every consumer that cannot be updated.
    """
    client = await nats.connect(url, token=token, allow_reconnect=False, connect_timeout=5)
    changed = []
    mismatched = []
    apps = app_ids()
    try:
        jetstream = client.jetstream()
        for topic in topics:
            config = config_for(topic)
            try:
                info = await jetstream.stream_info(config.name)
            except NotFoundError:
                await jetstream.add_stream(config)
                changed.append(config.name)
                continue
            if info.config.subjects != config.subjects or info.config.max_msgs != config.max_msgs:
                await jetstream.update_stream(config)
                changed.append(config.name)
            if consumers is None:
                continue
            for consumer in await jetstream.consumers_info(config.name):
                if consumer.config.durable_name not in apps:
                    continue  # a test's own consumer, or one this platform did not make
                name = f"{config.name}/{consumer.name}"
                try:
                    update = consumer_update(consumer.config, consumers)
                except ConsumerMismatch as error:
                    mismatched.append(f"{name}: {error}")
                    continue
                if update is not None:
                    # Same durable name and deliver subject: the server updates it in place.
                    await jetstream.add_consumer(config.name, update)
                    changed.append(name)
    finally:
        await client.close()
    if mismatched:
        raise ConsumerMismatch(
            "these durable consumers cannot be updated to the component's settings: "
            + "; ".join(mismatched)
            + ". Stop the platform and delete each (daprd creates it again, starting at the component's"
            " deliverPolicy): uv run --frozen --no-sync python scripts/nats_streams.py --delete-consumer STREAM/NAME"
        )
    return changed


async def delete_consumer(url: str, token: str, stream_and_name: str) -> None:
    stream, _, name = stream_and_name.partition("/")
    client = await nats.connect(url, token=token, allow_reconnect=False, connect_timeout=5)
    try:
        await client.jetstream().delete_consumer(stream, name)
    finally:
        await client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="nats://127.0.0.1:4222")
    parser.add_argument("--secrets", type=Path, default=ROOT / ".data" / "secrets.json")
    parser.add_argument("--component", type=Path, default=DEFAULT_COMPONENT, help="the pubsub.jetstream component")
    parser.add_argument("--delete-consumer", metavar="STREAM/NAME", help="delete this consumer and do nothing else")
    parser.add_argument("topics", nargs="*", help="topics beyond genai_platform.events.Topic")
    args = parser.parse_args()
    token = json.loads(args.secrets.read_text())["nats-password"]
    if args.delete_consumer:
        try:
            asyncio.run(delete_consumer(args.url, token, args.delete_consumer))
        except (APIError, NatsError, OSError) as error:
            sys.stderr.write(f"nats: deleting {args.delete_consumer} failed: {error}\n")
            return 1
        sys.stdout.write(f"nats: deleted consumer {args.delete_consumer}\n")
        return 0
    topics = sorted({*(str(topic) for topic in Topic), *args.topics})
    try:
        changed = asyncio.run(declare(args.url, token, topics, wanted_consumer(args.component)))
    except (APIError, NatsError, OSError, ConsumerMismatch) as error:
        sys.stderr.write(f"nats: declaring the JetStream streams and consumers failed: {error}\n")
        return 1
    sys.stdout.write(f"nats: {len(topics)} streams declared; created or updated: {', '.join(changed) or 'none'}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
