"""Who listens to which events. Apps register their handlers in AppConfig.ready().

A handler is called with the Event inside a transaction (a savepoint) under the system's
row-level security context, at least once per event: it must be idempotent (a replay, or a
retry after a crash between its effect and the delivery's commit, calls it again).
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


_handlers: dict[str, Handler] = {}


def register(
    name: str, *, event_types: list[str] | tuple[str, ...] | frozenset[str]
) -> Callable[[HandlerFunc], HandlerFunc]:
    """Decorator: `name` is stored on every delivery row, so it must never change."""

    def decorate(func: HandlerFunc) -> HandlerFunc:
        existing = _handlers.get(name)
        if existing is not None and existing.func is not func:
            raise ValueError(f"an event handler named {name!r} is already registered")
        _handlers[name] = Handler(name=name, event_types=frozenset(event_types), func=func)
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
