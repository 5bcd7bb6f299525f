"""Declared pub/sub subscriptions: one helper generates `/dapr/subscribe` and every event route.

Modelled on dapr-ext-fastapi's `DaprApp.subscribe(pubsub, topic, metadata, route,
dead_letter_topic)` decorator, which registers a POST route and lists it in `/dapr/subscribe`.
On top of that, each declared route here:

- validates the CloudEvent's `data` with the topic's payload model; a payload that does not
  validate can never succeed, so it is answered DROP (and logged);
- is idempotent on the CloudEvent `id` through one `SeenEvents` (genai_platform.idempotency):
  an id already handled is answered SUCCESS without calling the handler again; an id is
  recorded only after its handler succeeded;
- maps the handler's outcome to Dapr's answer: returned `Delivery` (or None: SUCCESS); an
  exception in `drop_on` -> DROP; a sidecar error (`DaprError`, or `retry_on`) -> RETRY; any other
  exception -> RETRY, logged with its traceback. The answer is always 200 with
  `{"status": ...}`: never a 404, which Dapr takes as "drop" (docs/architecture-notes.md).

The app token check (`APP_API_TOKEN`, genai_platform.security) applies to these routes like to
every other route of a service built with `create_service`. Dapr's answer semantics:
https://docs.dapr.io/reference/api/pubsub_api/#expected-http-response
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ValidationError

from genai_platform.dapr import DaprError
from genai_platform.events import CloudEvent, Delivery, DeliveryAnswer, Topic
from genai_platform.idempotency import SeenEvents

log = logging.getLogger(__name__)

# handler(request, event, payload) -> Delivery | None, sync or async; `payload` is the validated
# model, or `event.data` unchanged when the subscription declares no model.
Handler = Callable[[Request, CloudEvent, Any], "Delivery | None | Awaitable[Delivery | None]"]
SeenLookup = Callable[[Request], SeenEvents]
InvalidHook = Callable[[Request, CloudEvent], None]


def app_seen_events(request: Request) -> SeenEvents:
    """The app's `SeenEvents` (`app.state.seen_events`), the default for idempotent routes."""
    return request.app.state.seen_events


@dataclass(frozen=True)
class Subscription:
    """One declared subscription: what `/dapr/subscribe` lists, and how its route answers."""

    topic: str
    route: str
    handler: Handler
    payload: type[BaseModel] | None = None
    dead_letter_topic: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    seen: SeenLookup | None = app_seen_events
    drop_on: tuple[type[BaseException], ...] = ()
    retry_on: tuple[type[BaseException], ...] = ()
    on_invalid: InvalidHook | None = None

    def declaration(self, pubsub_name: str) -> dict[str, Any]:
        """This subscription as Dapr's programmatic subscription JSON (one `/dapr/subscribe` item)."""
        declared: dict[str, Any] = {"pubsubname": pubsub_name, "topic": self.topic, "route": self.route}
        if self.dead_letter_topic is not None:
            declared["deadLetterTopic"] = self.dead_letter_topic
        if self.metadata:
            declared["metadata"] = dict(self.metadata)
        return declared

    async def deliver(self, request: Request, event: CloudEvent) -> Delivery:
        """Handle one delivery and say what Dapr should do with the message; never raises."""
        context = {"event_id": event.id, "topic": self.topic}
        payload: Any = event.data
        if self.payload is not None:
            try:
                payload = self.payload.model_validate(event.data)
            except ValidationError as error:
                # It can never succeed: drop it (logged) rather than retry it forever.
                log.warning(
                    f"{self.topic}: invalid payload dropped",
                    extra={**context, "errors": error.errors(include_url=False, include_input=False)},
                )
                if self.on_invalid is not None:
                    self.on_invalid(request, event)
                return Delivery.DROP
        seen = self.seen(request) if self.seen is not None else None
        try:
            if seen is not None and await seen.handled(event.id):
                return Delivery.SUCCESS
            answer = self.handler(request, event, payload)
            if inspect.isawaitable(answer):
                answer = await answer
            answer = Delivery.SUCCESS if answer is None else Delivery(answer)
            if answer is Delivery.SUCCESS and seen is not None:
                await seen.record(event.id)
        except self.drop_on:
            log.warning(f"{self.topic}: event refused, dropped", extra=context, exc_info=True)
            return Delivery.DROP
        except (DaprError, *self.retry_on):
            log.warning(f"{self.topic}: transient failure, Dapr will redeliver", extra=context, exc_info=True)
            return Delivery.RETRY
        except Exception:
            log.exception(f"{self.topic}: handler failed, Dapr will redeliver", extra=context)
            return Delivery.RETRY
        return answer


class Subscriptions:
    """The subscriptions one app declares, as an `APIRouter` to pass to `create_service`.

    `router` serves `GET /dapr/subscribe` (every declared subscription, on the pub/sub component
    named by the app's `settings.pubsub_name`) and one `POST` route per subscription. The routes
    are left out of the OpenAPI document: only the sidecar calls them.
    """

    def __init__(self) -> None:
        self.declared: list[Subscription] = []
        self.router = APIRouter(tags=["dapr"], include_in_schema=False)
        self.router.add_api_route("/dapr/subscribe", self._list, methods=["GET"])

    async def _list(self, request: Request) -> list[dict[str, Any]]:
        return self.declarations(request.app.state.settings.pubsub_name)

    def declarations(self, pubsub_name: str) -> list[dict[str, Any]]:
        """What `GET /dapr/subscribe` answers: one item per subscription, in declaration order."""
        return [subscription.declaration(pubsub_name) for subscription in self.declared]

    @property
    def topics(self) -> set[str]:
        """Every topic this app subscribes to."""
        return {subscription.topic for subscription in self.declared}

    def subscribe(
        self,
        topic: Topic | str,
        *,
        route: str,
        payload: type[BaseModel] | None = None,
        dead_letter_topic: Topic | str | None = None,
        metadata: dict[str, str] | None = None,
        seen: SeenLookup | None = app_seen_events,
        drop_on: Sequence[type[BaseException]] = (),
        retry_on: Sequence[type[BaseException]] = (),
        on_invalid: InvalidHook | None = None,
    ) -> Callable[[Handler], Handler]:
        """Declare a subscription to `topic`, delivered to `route`, handled by the decorated function.

        - `payload`: the model `event.data` must validate with (None: the data as sent);
        - `dead_letter_topic`: where the sidecar moves the message once its retries are spent
          (None: no dead-letter topic; on Redis Streams the message is then acknowledged);
        - `metadata`: Dapr subscription metadata (e.g. `rawPayload`), listed as given;
        - `seen`: where the ids of handled events are kept (default `app.state.seen_events`);
          None for a handler that is idempotent by itself and needs no id check;
        - `drop_on`: exceptions that mean the event can never succeed (answered DROP);
        - `retry_on`: further exceptions that are transient like `DaprError` (answered RETRY,
          logged without alarm); any other exception is also RETRY, logged with its traceback;
        - `on_invalid(request, event)`: called before a DROP for an invalid payload.

        The handler is called as `handler(request, event, payload)` and returns a `Delivery` or
        None (SUCCESS). Raises ValueError when `route` is declared twice.
        """
        if any(existing.route == route for existing in self.declared):
            raise ValueError(f"route {route} is already subscribed")

        def decorator(handler: Handler) -> Handler:
            subscription = Subscription(
                topic=str(topic),
                route=route,
                handler=handler,
                payload=payload,
                dead_letter_topic=str(dead_letter_topic) if dead_letter_topic is not None else None,
                metadata=dict(metadata or {}),
                seen=seen,
                drop_on=tuple(drop_on),
                retry_on=tuple(retry_on),
                on_invalid=on_invalid,
            )
            self.declared.append(subscription)

            async def endpoint(request: Request, event: CloudEvent) -> DeliveryAnswer:
                return DeliveryAnswer(status=await subscription.deliver(request, event))

            endpoint.__name__ = f"on_{route.strip('/').replace('/', '_').replace('-', '_').replace('.', '_')}"
            self.router.add_api_route(route, endpoint, methods=["POST"])
            return handler

        return decorator
