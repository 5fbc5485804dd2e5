from __future__ import annotations

from collections.abc import Callable
from uuid import UUID

from django.contrib.auth import SESSION_KEY
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import AccessToken

from treasury.models import Role, User
from treasury.rls import ContextRole, rls_context, set_rls_context


def claimed_user_id(request: HttpRequest) -> UUID | None:
    """Who the request says it is: a valid access token, else the session's user.

    The token's signature and expiry are checked here (no database); DRF's authentication
    later rejects the request properly if the user turns out to be unknown or inactive.
    """
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if header.startswith("Bearer "):
        try:
            return UUID(str(AccessToken(header.removeprefix("Bearer ").strip())["user_id"]))
        except (TokenError, KeyError, ValueError):
            return None
    session_user = request.session.get(SESSION_KEY) if hasattr(request, "session") else None
    try:
        return UUID(str(session_user)) if session_user else None
    except ValueError:
        return None


class RowLevelSecurityMiddleware:
    """Each request runs in one transaction whose first statement sets the RLS context.

    The claimed user may first read only their own `users` row; their role there decides
    whether the rest of the request runs as `admin` or `user`. A response of 400 or more
    rolls the transaction back, so a refused request leaves nothing half-written.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user_id = claimed_user_id(request)
        with transaction.atomic(), rls_context(user_id=user_id, role=ContextRole.USER):
            if user_id is not None:
                row = User.objects.filter(pk=user_id, is_active=True).values("role").first()
                if row and row["role"] == Role.ADMIN:
                    set_rls_context(user_id=user_id, role=ContextRole.ADMIN)
            response = self.get_response(request)
            if response.status_code >= 400:
                transaction.set_rollback(True)
        return response
