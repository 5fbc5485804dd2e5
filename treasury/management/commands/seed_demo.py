from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from treasury.models import Role
from treasury.services import ensure_user

ADMIN_EMAIL = "admin@treasury.local"
DEMO_PASSWORD = "treasury-demo-2026"  # noqa: S105  (printed by make demo; demo data only)

DEMO_USERS: list[tuple[str, Role, str]] = [
    ("host.aurora@treasury.local", Role.HOST, "Aurora Hall"),
    ("host.basement@treasury.local", Role.HOST, "The Basement Club"),
    ("artist.nova@treasury.local", Role.ARTIST, "Nova Reyes"),
    ("artist.kite@treasury.local", Role.ARTIST, "Kite & Wire"),
    ("buyer.sam@treasury.local", Role.BUYER, "Sam Buyer"),
    ("buyer.lee@treasury.local", Role.BUYER, "Lee Buyer"),
    ("buyer.ana@treasury.local", Role.BUYER, "Ana Buyer"),
]


class Command(BaseCommand):
    help = "Seed the demo marketplace (idempotent: running it again changes nothing)."

    def handle(self, *args: Any, **options: Any) -> None:
        _, created = ensure_user(
            email=ADMIN_EMAIL,
            password=DEMO_PASSWORD,
            role=Role.ADMIN,
            display_name="Ops Admin",
            is_staff=True,
        )
        made = int(created)
        for email, role, name in DEMO_USERS:
            _, created = ensure_user(
                email=email, password=DEMO_PASSWORD, role=role, display_name=name
            )
            made += int(created)
        self.stdout.write(
            self.style.SUCCESS(f"seeded {made} new users ({1 + len(DEMO_USERS)} in the demo)")
        )
