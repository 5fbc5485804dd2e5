from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import connections
from rest_framework.test import APIClient

from tests.factories import AdminFactory, ArtistFactory, HostFactory, UserFactory
from treasury.api import token_pair
from treasury.models import User


@pytest.fixture(scope="session")
def django_db_setup(
    request: pytest.FixtureRequest,
    django_test_environment: None,
    django_db_blocker: Any,
    django_db_keepdb: bool,
    django_db_modify_db_settings: None,
) -> Iterator[None]:
    """The owner creates and migrates the test database; `default` mirrors it and connects
    as treasury_app (settings.DATABASES), so every test runs under row-level security.

    Both aliases are always set up: pytest-django would otherwise skip `owner` when no test
    asks for it, and `default` would keep pointing at the development database.
    """
    from django.test.utils import setup_databases, teardown_databases

    with django_db_blocker.unblock():
        config = setup_databases(
            verbosity=request.config.option.verbose,
            interactive=False,
            keepdb=django_db_keepdb,
            aliases={"default", "owner"},
        )
        name = connections["default"].settings_dict["NAME"]
        if not name.startswith("test_"):
            pytest.exit(f"refusing to run tests on database {name!r}", returncode=3)
        # Tests may break the books on purpose (anomalies/migrations/0004); a test database
        # only, turned on by the owner.
        with connections["owner"].cursor() as cursor:
            cursor.execute(
                "INSERT INTO treasury_private.ledger_drills DEFAULT VALUES ON CONFLICT DO NOTHING"
            )
    yield
    with django_db_blocker.unblock():
        for connection in connections.all():
            connection.close()
        if not django_db_keepdb:
            _end_leftover_sessions(connections["owner"].settings_dict["NAME"])
            teardown_databases(config, verbosity=request.config.option.verbose)


def _end_leftover_sessions(name: str) -> None:
    """A live test's server thread can leave its connection open (one of the browser tests'
    does, not yet traced); DROP DATABASE would then fail the whole run at its very end. The
    owner ends them: nothing else may use the test database by now."""
    import warnings

    with connections["owner"]._nodb_cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid), application_name, state FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            [name],
        )
        ended = cursor.fetchall()
    if ended:
        warnings.warn(f"ended {len(ended)} leftover session(s) on {name}", stacklevel=1)


@pytest.fixture
def sync_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    """django-q2 runs queued tasks in-process, at once. Its Conf reads Q_CLUSTER at import,
    so the flag is set on Conf itself (settings.Q_CLUSTER["sync"] would come too late)."""
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", True)


@pytest.fixture
def buyer(db: None) -> User:
    return UserFactory()


@pytest.fixture
def host(db: None) -> User:
    return HostFactory()


@pytest.fixture
def artist(db: None) -> User:
    return ArtistFactory()


@pytest.fixture
def admin_user(db: None) -> User:
    return AdminFactory()


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def client_for() -> Callable[[User], APIClient]:
    """An API client that carries `user`'s JWT access token."""

    def make(user: User) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_pair(user)['access']}")
        return client

    return make


@pytest.fixture
def raw_sql() -> Callable[..., list[tuple[Any, ...]]]:
    """Run raw SQL on the runtime role's connection (the one RLS applies to)."""

    def run(
        statement: str, params: list[Any] | None = None, using: str = "default"
    ) -> list[tuple[Any, ...]]:
        with connections[using].cursor() as cursor:
            cursor.execute(statement, params or [])
            return cursor.fetchall() if cursor.description else []

    return run


@pytest.fixture
def committed_db(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """Real commits, for tests whose threads must see each other's work.

    Append-only tables cannot be truncated, so nothing is flushed afterwards: such tests
    use fresh users and unique keys, and assert on their own rows only.
    """
    with django_db_blocker.unblock():
        yield
        for connection in connections.all():
            connection.close()


@pytest.fixture
def runtime_connection() -> Iterator[Any]:
    """A separate psycopg connection to the test database as the runtime role, for proving
    what happens at COMMIT (the test's own connection never commits)."""
    import psycopg

    params = connections["default"].get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(**params) as conn:
        yield conn


@pytest.fixture
def owner_connection() -> Iterator[Any]:
    """A separate psycopg connection to the test database as the owner."""
    import psycopg

    params = connections["owner"].get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(**params) as conn:
        yield conn
