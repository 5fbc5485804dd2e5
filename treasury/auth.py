from __future__ import annotations

from typing import Any
from uuid import UUID

from django.contrib.auth.backends import ModelBackend
from django.http import HttpRequest
from rest_framework.exceptions import AuthenticationFailed
from rest_framework_simplejwt.serializers import TokenRefreshSerializer
from rest_framework_simplejwt.settings import api_settings

from treasury.models import User
from treasury.rls import ContextRole, rls_context, set_rls_context, system_context


class EmailBackend(ModelBackend):
    """Email + password login. The lookup runs in the system context: before a user is known
    no row of `users` is visible, so a login needs the one privileged read it is for."""

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> User | None:
        email = kwargs.get("email") or username
        if not email or not password:
            return None
        with system_context():
            user = User.objects.filter(email__iexact=email).first()
        if user is None:
            User().set_password(password)  # same work as a real check, against timing probes
            return None
        if user.check_password(password) and self.user_can_authenticate(user):
            # The rest of this request acts as the user who just proved who they are
            # (Django's login() then updates their own row, which RLS now lets it see).
            role = ContextRole.ADMIN if user.is_admin else ContextRole.USER
            set_rls_context(user_id=user.pk, role=role)
            return user
        return None


def token_user(user_id: object) -> User | None:
    """The user a verified token names, read under that user's own context.

    Endpoints that run without an access token (refresh) have an empty RLS context, in
    which no `users` row is visible: the lookup must not depend on whoever else the request
    claims to be. The token's signature proves who it is for, so the read runs as exactly
    that user (RLS shows them their own row and nothing else); not the system context,
    which would be more than the one row this needs. None for an id that is not a UUID or
    names no user.
    """
    try:
        pk = UUID(str(user_id))
    except ValueError:
        return None
    with rls_context(user_id=pk, role=ContextRole.USER):
        return User.objects.filter(pk=pk).first()


class RefreshSerializer(TokenRefreshSerializer):
    """simplejwt's refresh, with the user read under the token's own user (`token_user`)
    and every unknown, deactivated or erased user a 401, never a 500."""

    def validate(self, attrs: dict[str, Any]) -> dict[str, str]:
        refresh = self.token_class(attrs["refresh"])  # signature, expiry, type: else 401
        user = token_user(refresh.payload.get(api_settings.USER_ID_CLAIM))
        if user is None or not api_settings.USER_AUTHENTICATION_RULE(user):
            raise AuthenticationFailed(
                self.error_messages["no_active_account"], "no_active_account"
            )
        data = {"access": str(refresh.access_token)}
        # As the parent does (off in settings.SIMPLE_JWT; no blacklist app is installed).
        if api_settings.ROTATE_REFRESH_TOKENS:
            refresh.set_jti()
            refresh.set_exp()
            refresh.set_iat()
            data["refresh"] = str(refresh)
        return data
