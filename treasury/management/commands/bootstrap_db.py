from __future__ import annotations

from typing import Any

import psycopg
from django.core.management.base import BaseCommand
from django.db import connections
from psycopg import sql

from treasury.db_roles import ensure_runtime_role


class Command(BaseCommand):
    help = "Create the database and the runtime role (as the owner). Safe to run again."
    requires_system_checks: list[str] = []

    def handle(self, *args: Any, **options: Any) -> None:
        owner = connections["owner"]
        params = owner.get_connection_params()
        name = params.pop("dbname")
        params["dbname"] = "postgres"
        with psycopg.connect(**params, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                self.stdout.write(f"created database {name}")
        ensure_runtime_role(using="owner")
        self.stdout.write(self.style.SUCCESS(f"database {name} and its runtime role are ready"))
