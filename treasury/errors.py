"""The API's one error shape and the named errors services raise.

Every 4xx/5xx body is {"error": {"code": ..., "message": ..., "fields": {...}}}.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.defaults import page_not_found
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler


class TreasuryError(Exception):
    """A business rule said no. Subclasses carry their HTTP status and a stable code."""

    status_code = status.HTTP_400_BAD_REQUEST
    code = "invalid"

    def __init__(self, message: str, *, fields: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or {}


class InvalidInput(TreasuryError):
    code = "invalid"


class NotFound(TreasuryError):
    status_code = status.HTTP_404_NOT_FOUND
    code = "not_found"


class Forbidden(TreasuryError):
    status_code = status.HTTP_403_FORBIDDEN
    code = "permission_denied"


class Conflict(TreasuryError):
    status_code = status.HTTP_409_CONFLICT
    code = "conflict"


class IdempotencyConflict(Conflict):
    code = "idempotency_conflict"


class InsufficientFunds(TreasuryError):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    code = "insufficient_funds"


def error_body(code: str, message: str, fields: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "fields": fields or {}}}


def _flatten_fields(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested serializer errors as {"field.sub.0": ["message", ...]}."""
    if isinstance(detail, dict):
        flat: dict[str, list[str]] = {}
        for key, value in detail.items():
            flat.update(_flatten_fields(value, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    if isinstance(detail, list) and detail and not all(isinstance(d, str) for d in detail):
        flat = {}
        for index, value in enumerate(detail):
            flat.update(_flatten_fields(value, f"{prefix}.{index}" if prefix else str(index)))
        return flat
    messages = detail if isinstance(detail, list) else [detail]
    return {prefix or "non_field_errors": [str(m) for m in messages]}


def _first_message(fields: dict[str, list[str]]) -> str:
    field, messages = next(iter(fields.items()))
    return messages[0] if field == "non_field_errors" else f"{field}: {messages[0]}"


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, TreasuryError):
        return Response(error_body(exc.code, exc.message, exc.fields), status=exc.status_code)
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else exc.messages
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        fields = _flatten_fields(exc.detail)
        response.data = error_body("invalid", _first_message(fields), fields)
    else:
        detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        code = getattr(detail, "code", None) or getattr(exc, "default_code", "error")
        response.data = error_body(str(code), str(detail))
    return response


ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "fields"],
            "properties": {
                "code": {"type": "string", "minLength": 1},
                "message": {"type": "string", "minLength": 1},
                "fields": {
                    "type": "object",
                    "description": "the fields at fault (dotted paths into the body), each"
                    " with what is wrong with it",
                    "additionalProperties": {"type": "array", "items": {"type": "string"}},
                },
            },
        }
    },
}


def document_error_responses(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: the schema says what every operation may answer
    besides its successes, a 4xx with the one error body (400 bad input, 401, 403, 404 not
    found or not yours, 405, 409, 415, 422), and that body's shape, so clients and the schema
    tests know it."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    content = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path in result.get("paths", {}).values():
        for operation in path.values():
            responses = operation.setdefault("responses", {})
            for code, response in responses.items():
                if str(code).startswith("4"):
                    response["content"] = content
            responses.setdefault(
                "4XX",
                {"description": "The request was refused; the body says why.", "content": content},
            )
    return result


def json_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse(error_body("not_found", f"Nothing at {request.path}."), status=404)
    return page_not_found(request, exception or Http404())


def json_server_error(request: HttpRequest) -> JsonResponse:
    return JsonResponse(error_body("server_error", "Internal server error."), status=500)
