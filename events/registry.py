"""Who listens to which events. Apps register their handlers in AppConfig.ready().

A handler is called with the Event at least once per event: it must be idempotent (a
replay, or a retry after a crash between its effect and the delivery's commit, calls it
again). By default it runs inside a transaction (a savepoint) under the system's row-level
security context, and its success commits with its writes.

A handler registered with `atomic=False` is a job that talks to the outside world (Stripe,
mail): it runs outside any transaction of the dispatcher's, so that no call to Stripe is made
while a database transaction holds locks, and opens its own transactions (and context) for
what it writes. Its delivery is leased while it runs and retried if the worker dies; a job
that has not finished its work raises, and is retried with backoff.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from events.models import Event

HandlerFunc = Callable[["Event"], None]


@dataclass(frozen=True)
class Handler:
    name: str
    event_types: frozenset[str]
    func: HandlerFunc
    atomic: bool = True


_handlers: dict[str, Handler] = {}


def register(
    name: str,
    *,
    event_types: list[str] | tuple[str, ...] | frozenset[str],
    atomic: bool = True,
) -> Callable[[HandlerFunc], HandlerFunc]:
    """Decorator: `name` is stored on every delivery row, so it must never change."""

    def decorate(func: HandlerFunc) -> HandlerFunc:
        existing = _handlers.get(name)
        if existing is not None and existing.func is not func:
            raise ValueError(f"an event handler named {name!r} is already registered")
        _handlers[name] = Handler(
            name=name, event_types=frozenset(event_types), func=func, atomic=atomic
        )
        return func

    return decorate


def unregister(name: str) -> None:
    _handlers.pop(name, None)


def handler_named(name: str) -> Handler | None:
    return _handlers.get(name)


def handlers_for(event_type: str) -> list[Handler]:
    return [h for h in _handlers.values() if event_type in h.event_types]


def handler_names() -> list[str]:
    return sorted(_handlers)
