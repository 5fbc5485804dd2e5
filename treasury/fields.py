"""Serializer fields shared by every app's API."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from ledger.money import normalize_currency
from treasury.errors import InvalidInput


class MinorUnitsField(serializers.Field):
    """An amount in minor units: a JSON integer, never a float, a string or a boolean."""

    default_error_messages = {
        "invalid": "must be an integer number of minor units (e.g. cents), not {kind}",
        "min_value": "must be at least {min_value}",
    }

    def __init__(self, *, min_value: int | None = 1, **kwargs: Any) -> None:
        self.min_value = min_value
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid", kind=type(data).__name__)
        if self.min_value is not None and data < self.min_value:
            self.fail("min_value", min_value=self.min_value)
        return data

    def to_representation(self, value: int) -> int:
        return value


class CurrencyField(serializers.CharField):
    """An ISO 4217 code, returned upper-case; unknown codes are a 400 that says so."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", 3)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        try:
            return normalize_currency(super().to_internal_value(data))
        except InvalidInput as exc:
            raise serializers.ValidationError(exc.message) from exc
