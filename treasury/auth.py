from __future__ import annotations

from typing import Any

from django.contrib.auth.backends import ModelBackend
from django.http import HttpRequest

from treasury.models import User
from treasury.rls import ContextRole, set_rls_context, system_context


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
