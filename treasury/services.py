from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction
from django.forms.models import model_to_dict

from treasury.errors import Conflict, InvalidInput
from treasury.models import SELF_SERVICE_ROLES, AuditLog, Role, User
from treasury.rls import system_context


def snapshot(instance: models.Model | None) -> dict[str, Any] | None:
    """A JSON-safe picture of a row for the audit log (secrets left out)."""
    if instance is None:
        return None
    data = model_to_dict(instance)
    data.pop("password", None)
    data["id"] = str(instance.pk)
    return {key: _json_safe(value) for key, value in data.items()}


def _json_safe(value: Any) -> Any:
    if isinstance(value, models.Model):
        return str(value.pk)
    if isinstance(value, list | tuple | set):
        return [_json_safe(v) for v in value]
    if isinstance(value, str | int | bool | type(None) | dict):
        return value
    return str(value)


@dataclass
class AuditScope:
    """Audit rows written inside `audit_scope()`, and what every one of them is tagged with."""

    details: dict[str, Any]
    rows: list[AuditLog] = field(default_factory=list)


_audit_scope: ContextVar[AuditScope | None] = ContextVar("treasury_audit_scope", default=None)


@contextmanager
def audit_scope(**details: Any) -> Iterator[AuditScope]:
    """Tag the audit rows written in the block with `details` (merged into their details) and
    collect them: the override console uses it to return the one row a service wrote, and to
    record the operator's reason without every service taking a `reason` argument."""
    scope = AuditScope(details=details)
    token = _audit_scope.set(scope)
    try:
        yield scope
    finally:
        _audit_scope.reset(token)


@transaction.atomic
def record_audit(
    *,
    actor: User | None,
    action: str,
    target: models.Model | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    details: dict[str, Any] | None = None,
) -> AuditLog:
    """One audit row, written in the caller's transaction so it stands or falls with the change."""
    scope = _audit_scope.get()
    row = AuditLog.objects.create(
        user=actor if actor is not None and actor.pk else None,
        action=action,
        target_type=target._meta.label_lower if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        before=before,
        after=after,
        details={**(details or {}), **(scope.details if scope else {})},
    )
    if scope is not None:
        scope.rows.append(row)
    return row


@transaction.atomic
def register_user(*, email: str, password: str, role: str, display_name: str = "") -> User:
    """Self-service signup for buyers, hosts and artists (admins are made by admins)."""
    if role not in SELF_SERVICE_ROLES:
        allowed = ", ".join(SELF_SERVICE_ROLES)
        raise InvalidInput(f"role must be one of {allowed}", fields={"role": [f"one of {allowed}"]})
    email = User.objects.normalize_email(email).lower()
    candidate = User(email=email, role=role, display_name=display_name)
    try:
        validate_password(password, user=candidate)
    except ValidationError as exc:
        raise InvalidInput(exc.messages[0], fields={"password": exc.messages}) from exc
    # Signup happens before the user exists, so it looks and writes as the system.
    with system_context():
        if User.objects.filter(email__iexact=email).exists():
            raise Conflict("a user with this email already exists", fields={"email": ["taken"]})
        try:
            with transaction.atomic():
                user = User.objects.create_user(
                    email, password, role=role, display_name=display_name
                )
        except IntegrityError as exc:  # a concurrent signup won the race
            raise Conflict(
                "a user with this email already exists", fields={"email": ["taken"]}
            ) from exc
        record_audit(actor=user, action="user.signup", target=user, after=snapshot(user))
    return user


def deactivate_user(*, user: User) -> User:
    """Close an account: the GDPR erasure of privacy.services (the row stays, pseudonymised;
    no PII is left in the audit log)."""
    from privacy.services import erase_user

    return erase_user(user=user, actor=user)


@transaction.atomic
def ensure_user(
    *, email: str, password: str, role: Role, display_name: str = "", is_staff: bool = False
) -> tuple[User, bool]:
    """Create a user if the email is new (seeding, idempotent); returns (user, created)."""
    with system_context():
        user = User.objects.filter(email__iexact=email).first()
        if user is not None:
            return user, False
        user = User.objects.create_user(
            email,
            password,
            role=role,
            display_name=display_name,
            is_staff=is_staff,
            is_superuser=is_staff,
        )
        record_audit(actor=None, action="user.seed", target=user, after=snapshot(user))
    return user, True
