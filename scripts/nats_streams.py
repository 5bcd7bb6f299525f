"""Declare one JetStream stream per platform topic on the local NATS server (idempotent).

Dapr's `pubsub.jetstream` component creates consumers, never streams: a publish to a subject no
stream captures fails with "no responders". And its `durableName` is one name for every
subscription of an app, while a consumer name is unique per stream; so each topic gets a stream
of its own (subject = the topic, name = the topic with `.` as `_`), and each app one durable
consumer per stream (`durableName: "{appID}"` in components/profiles/nats-postgres/pubsub.yaml).

Topics come from `genai_platform.events.Topic` (the one list of topics) plus any given on the
command line. Run by `scripts/infra.sh start nats` on every start, so a new topic gets its stream.

    uv run --frozen --no-sync python scripts/nats_streams.py [--url nats://127.0.0.1:4222] [TOPIC...]

Exits 1 with the server's error when a stream cannot be created or updated.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

import nats
from nats.errors import Error as NatsError
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
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


async def declare(url: str, token: str, topics: list[str]) -> list[str]:
    """Create or update each topic's stream; returns the names of those created or changed."""
    client = await nats.connect(url, token=token, allow_reconnect=False, connect_timeout=5)
    changed = []
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
    finally:
        await client.close()
    return changed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="nats://127.0.0.1:4222")
    parser.add_argument("--secrets", type=Path, default=ROOT / ".data" / "secrets.json")
    parser.add_argument("topics", nargs="*", help="topics beyond genai_platform.events.Topic")
    args = parser.parse_args()
    token = json.loads(args.secrets.read_text())["nats-password"]
    topics = sorted({*(str(topic) for topic in Topic), *args.topics})
    try:
        changed = asyncio.run(declare(args.url, token, topics))
    except (APIError, NatsError, OSError) as error:
        sys.stderr.write(f"nats: declaring the JetStream streams failed: {error}\n")
        return 1
    sys.stdout.write(f"nats: {len(topics)} streams declared ({len(changed)} created or updated)\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
