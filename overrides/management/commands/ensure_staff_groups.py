from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from overrides.permissions import ensure_staff_groups


class Command(BaseCommand):
    help = "Create or update the staff groups (ops, support, finance) and their permissions."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--database", default="owner")

    def handle(self, *args: Any, **options: Any) -> None:
        for group, count in ensure_staff_groups(using=options["database"]).items():
            self.stdout.write(f"{group}: {count} permissions")
