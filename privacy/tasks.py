"""django-q2 jobs for privacy: thin wrappers around services.

Scheduled by migration 0001 (every PRIVACY_RETENTION_EVERY_HOURS): `apply_retention`.
"""

from __future__ import annotations

from privacy import services


def apply_retention() -> dict[str, int]:
    """Erase long-deactivated users, leftover report files, old webhook payloads' PII."""
    return services.apply_retention()
