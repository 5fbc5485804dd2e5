"""The one pagination of every list in the API: `limit`/`offset`, checked like any input."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request

from treasury.fields import InputSerializer

MAX_LIMIT = 1000
MAX_OFFSET = 10**9  # beyond any list here, and well inside PostgreSQL's OFFSET


class PageQuery(InputSerializer):
    limit = serializers.IntegerField(required=False, min_value=1, max_value=MAX_LIMIT)
    offset = serializers.IntegerField(required=False, min_value=0, max_value=MAX_OFFSET)


class Pagination(LimitOffsetPagination):
    """DRF's limit/offset, except that a bad `limit` or `offset` (not a number, out of range,
    given twice) is a 400 naming it, where DRF would quietly use its default instead."""

    max_limit = MAX_LIMIT

    def paginate_queryset(self, queryset: Any, request: Request, view: Any = None) -> Any:
        page = PageQuery(data=request.query_params)
        page.is_valid(raise_exception=True)
        self._page = page.validated_data
        return super().paginate_queryset(queryset, request, view)

    def get_limit(self, request: Request) -> int:
        return self._page.get("limit", self.default_limit)

    def get_offset(self, request: Request) -> int:
        return self._page.get("offset", 0)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        bounds = {
            "limit": {"minimum": 1, "maximum": MAX_LIMIT},
            "offset": {"minimum": 0, "maximum": MAX_OFFSET},
        }
        for parameter in parameters:
            parameter["schema"].update(bounds.get(parameter["name"], {}))
        return parameters


def page_of(
    serializer_class: type[serializers.Serializer], name: str
) -> type[serializers.Serializer]:
    """The documented shape of one page of `serializer_class`, for views whose answer is
    sometimes a page and sometimes not (drf-spectacular pages list answers by itself)."""
    return type(
        name,
        (serializers.Serializer,),
        {
            "count": serializers.IntegerField(),
            "next": serializers.URLField(allow_null=True),
            "previous": serializers.URLField(allow_null=True),
            "results": serializer_class(many=True),
        },
    )
