"""Request parameters as the ``stripe`` library sends them, and Stripe's error type.

Stripe's API takes form-encoded bodies with bracketed keys (``metadata[order]=7``,
``expand[0]=x``, ``expand[]=x``); the control API takes JSON. Both end up in a ``Params``
whose typed getters answer bad input the way Stripe does (400 with ``param`` set).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

_KEY_PART = re.compile(r"\[([^\]]*)\]")


@dataclass
class StripeError(Exception):
    """An error answered in Stripe's shape: ``{"error": {type, code, message, param}}``."""

    status: int
    message: str
    code: str | None = None
    param: str | None = None
    type: str = "invalid_request_error"
    extra: dict[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        error = {"type": self.type, "code": self.code, "message": self.message}
        return {"error": {**error, "param": self.param, **self.extra}}


def not_found(kind: str, object_id: str, param: str = "id") -> StripeError:
    return StripeError(404, f"No such {kind}: '{object_id}'", "resource_missing", param)


def parse_form(body: str) -> dict[str, Any]:
    """Decode ``a[b][0]=v`` pairs into nested dicts, turning all-numeric keys into lists."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        head, _, rest = key.partition("[")
        parts = [head, *_KEY_PART.findall("[" + rest)] if rest else [head]
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part or str(len(node)), {})
            if not isinstance(node, dict):  # "a=1&a[b]=2": a is both a value and an object
                raise StripeError(400, f"Invalid parameter: {key}", "parameter_invalid", head)
        node[parts[-1] or str(len(node))] = value
    return _listify(root)


def _listify(node: Any, key: str = "") -> Any:
    if not isinstance(node, dict):
        return node
    items = {k: _listify(v, k) for k, v in node.items()}
    # metadata keys are the caller's own strings: "0" there is a key, not an index.
    if items and key != "metadata" and all(k.isdigit() for k in items):
        return [items[k] for k in sorted(items, key=int)]
    return items


class Params:
    """Typed, Stripe-flavoured access to decoded parameters (form or JSON)."""

    def __init__(self, data: dict[str, Any] | None = None) -> None:
        self.data = data or {}

    def has(self, name: str) -> bool:
        return name in self.data

    def text(
        self, name: str, default: str | None = None, *, choices: tuple[str, ...] = ()
    ) -> str | None:
        value = self.data.get(name, default)
        if value is not None and not isinstance(value, str):
            raise StripeError(400, f"Invalid string: {value!r}", "parameter_invalid_string", name)
        if value is not None and choices and value not in choices:
            allowed = ", ".join(choices)
            raise StripeError(400, f"Invalid {name}: must be one of {allowed}", None, name)
        return value

    def required_text(self, name: str, *, choices: tuple[str, ...] = ()) -> str:
        value = self.text(name, choices=choices)
        if not value:
            raise StripeError(400, f"Missing required param: {name}.", "parameter_missing", name)
        return value

    def currency(self) -> str:
        value = self.required_text("currency").lower()
        if not re.fullmatch(r"[a-z]{3}", value):
            raise StripeError(
                400, f"Invalid currency: {value}.", "parameter_invalid_string", "currency"
            )
        return value

    def amount(self, name: str = "amount", *, required: bool = True) -> int | None:
        """A positive integer in minor units; floats are refused like Stripe refuses them."""
        value = self.data.get(name)
        if value is None or value == "":
            if required:
                raise StripeError(
                    400, f"Missing required param: {name}.", "parameter_missing", name
                )
            return None
        text = str(value) if not isinstance(value, bool) else ""
        if not text.isdigit() or int(text) <= 0:
            message = f"Invalid positive integer: {value!r}"
            raise StripeError(400, message, "parameter_invalid_integer", name)
        return int(text)

    def integer(self, name: str, default: int) -> int:
        value = self.data.get(name, default)
        try:
            return int(value)
        except (TypeError, ValueError):
            message = f"Invalid integer: {value!r}"
            raise StripeError(400, message, "parameter_invalid_integer", name) from None

    def flag(self, name: str, default: bool = False) -> bool:
        value = self.data.get(name, default)
        return value is True or value == "true"

    def mapping(self, name: str) -> dict[str, Any]:
        value = self.data.get(name) or {}
        if not isinstance(value, dict):
            raise StripeError(400, f"Invalid object: {name}", "parameter_invalid_object", name)
        return value

    def strings(self, name: str) -> list[str]:
        value = self.data.get(name) or []
        return [value] if isinstance(value, str) else [str(item) for item in value]
