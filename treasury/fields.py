"""What every request to the API is held to, in one place, and said the same way in the
OpenAPI schema as in the server:

- `MinorUnitsField`: every amount, a JSON integer from its minimum to MAX_AMOUNT_MINOR.
- `CurrencyField`: every currency, an ISO 4217 code in use today (case-insensitive).
- `InputSerializer`: the base of every request serializer. A JSON body's values have the
  JSON type the schema gives them (a number is not a text, "5" is not an integer, "true" is
  not a boolean); a query string gives each parameter at most once; a field named with a
  trailing underscore (`from_`, a Python keyword) is the parameter without it (`from`).
- `VisibleUserField`: a user id in a filter or a request. Another user's id, or nobody's,
  is a 404 naming the field, everywhere, as another user's object is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.http import QueryDict
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from rest_framework import serializers

from ledger.money import MAX_AMOUNT_MINOR, known_currencies, normalize_currency
from treasury.errors import InvalidInput, NotFound


def _json_type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


class MinorUnitsField(serializers.Field):
    """An amount in minor units: a JSON integer (never a float, a string or a boolean) from
    `min_value` to `max_value`, which is at most MAX_AMOUNT_MINOR."""

    default_error_messages = {
        "invalid": "must be an integer number of minor units (e.g. cents), not {kind}",
        "min_value": "must be at least {min_value}",
        "max_value": "must be at most {max_value} minor units",
    }

    def __init__(
        self, *, min_value: int | None = 1, max_value: int = MAX_AMOUNT_MINOR, **kwargs: Any
    ) -> None:
        if max_value > MAX_AMOUNT_MINOR:
            raise ValueError(f"an amount's bound is at most MAX_AMOUNT_MINOR ({MAX_AMOUNT_MINOR})")
        self.min_value = min_value
        self.max_value = max_value
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid", kind=_json_type_name(data))
        if self.min_value is not None and data < self.min_value:
            self.fail("min_value", min_value=self.min_value)
        if data > self.max_value:
            self.fail("max_value", max_value=self.max_value)
        return data

    def to_representation(self, value: int) -> int:
        return value

    def openapi_schema(self) -> dict[str, Any]:
        """What the field accepts, for the OpenAPI schema (subclasses that take more widen it)."""
        schema: dict[str, Any] = {"type": "integer", "format": "int64", "maximum": self.max_value}
        if self.min_value is not None:
            schema["minimum"] = self.min_value
        return schema


class MinorUnitsFieldSchema(OpenApiSerializerFieldExtension):
    target_class = MinorUnitsField
    match_subclasses = True

    def map_serializer_field(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        return self.target.openapi_schema()


class CurrencyField(serializers.CharField):
    """An ISO 4217 code in current use ('usd' or 'USD'), returned upper-case. An unknown or a
    historical code (DEM) is a 400 that says so."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", 3)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            raise serializers.ValidationError(
                f"must be a currency code, not {_json_type_name(data)}"
            )
        value = super().to_internal_value(data)
        if value == "" and self.allow_blank:
            return value
        try:
            return normalize_currency(value)
        except InvalidInput as exc:
            raise serializers.ValidationError(exc.message) from exc


class CurrencyFieldSchema(OpenApiSerializerFieldExtension):
    target_class = CurrencyField
    match_subclasses = True

    def get_name(self) -> str:
        return "CurrencyOrBlank" if self.target.allow_blank else "Currency"

    def map_serializer_field(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        codes = sorted(known_currencies())
        return {
            "type": "string",
            "enum": [*codes, ""] if self.target.allow_blank else codes,
            "description": "An ISO 4217 code in use today; lower case is accepted too.",
        }


# A JSON body's value must have the type the schema gives the field; DRF would convert it.
_EXPECTED_JSON_TYPE: list[tuple[type[serializers.Field], str, tuple[type, ...]]] = [
    (serializers.BooleanField, "a boolean", (bool,)),
    (serializers.IntegerField, "an integer", (int,)),
    (serializers.FloatField, "a number", (int, float)),
    (serializers.CharField, "a string", (str,)),
    (serializers.ChoiceField, "a string", (str,)),
    (serializers.UUIDField, "a string", (str,)),
    (serializers.DateTimeField, "a string", (str,)),
    (serializers.DateField, "a string", (str,)),
]


def _type_error(field: serializers.Field, value: Any) -> str | None:
    if value is None:
        return None  # allow_null decides
    for field_class, name, accepted in _EXPECTED_JSON_TYPE:
        if isinstance(field, field_class):
            is_bool = isinstance(value, bool)
            if isinstance(value, accepted) and (bool in accepted or not is_bool):
                return None
            return f"must be {name}, not {_json_type_name(value)}"
    return None  # amounts, lists, objects and nested serializers check their own type


class InputSerializer(serializers.Serializer):
    # The base of every request serializer, for JSON bodies and query strings alike. (A
    # comment, not a docstring: drf-spectacular would give it to every subclass without one
    # as its description in the OpenAPI schema.)

    def get_fields(self) -> dict[str, serializers.Field]:
        # `from_ = DateTimeField()` is the parameter `from`: the name the client sends and
        # the one errors name.
        return {
            (name[:-1] if name.endswith("_") else name): field
            for name, field in super().get_fields().items()
        }

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, QueryDict):
            repeated = [name for name in self.fields if len(data.getlist(name)) > 1]
            if repeated:
                raise serializers.ValidationError(
                    {name: ["given more than once: give it once"] for name in repeated}
                )
            data = {name: data[name] for name in data}
        elif isinstance(data, Mapping):
            wrong = {
                name: [message]
                for name, field in self.fields.items()
                if not field.read_only
                and name in data
                and (message := _type_error(field, data[name])) is not None
            }
            if wrong:
                raise serializers.ValidationError(wrong)
        return super().to_internal_value(data)


# What DRF's CharField refuses that a bare {"type": "string"} would allow: a NUL character
# (PostgreSQL text cannot hold one), and, where a value is required, one that is blank once
# stripped of white space (Python's str.strip() set, not ECMA's \s).
_WHITE_SPACE = (
    "\\t\\n\\u000b\\u000c\\r\\u001c-\\u001f \\u0085\\u00a0\\u1680\\u2000-\\u200a"
    "\\u2028\\u2029\\u202f\\u205f\\u3000"
)
NO_NUL_PATTERN = "^[^\\u0000]*$"
NOT_BLANK_PATTERN = f"^[^\\u0000]*[^\\u0000{_WHITE_SPACE}][^\\u0000]*$"


def document_text_rules(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: every text a request may carry (body fields and
    query parameters) says in the schema what the server accepts, via a pattern."""

    def visit(schema: dict[str, Any]) -> None:
        if schema.get("type") == "string" and not {"enum", "format", "pattern"} & set(schema):
            schema["pattern"] = NOT_BLANK_PATTERN if schema.get("minLength", 0) else NO_NUL_PATTERN

    for name, component in result.get("components", {}).get("schemas", {}).items():
        if name.endswith("Request"):
            for prop in component.get("properties", {}).values():
                visit(prop)
    for path in result.get("paths", {}).values():
        for operation in path.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "query":
                    visit(parameter.get("schema", {}))
    return result


class VisibleUserField(serializers.UUIDField):
    """A user's id in a filter or a request: the caller's own, or any user's for an admin.

    Anything else, another user's id or one that names nobody, is a 404 naming the field,
    on every endpoint: as another user's object is (DESIGN), and without telling a stranger
    whether that user exists. Needs the request in the serializer's context.
    """

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str):
            self.fail("invalid")  # UUIDField would take an integer
        user_id = super().to_internal_value(data)
        viewer = self.context["request"].user
        if user_id == viewer.pk:
            return user_id
        if getattr(viewer, "is_admin", False):
            from treasury.models import User
            from treasury.rls import system_context

            with system_context():
                if User.objects.filter(pk=user_id).exists():
                    return user_id
        raise NotFound(f"no user {user_id}", fields={self.field_name: ["not found"]})
