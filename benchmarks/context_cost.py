"""What the verified RLS context costs, next to the forgeable one it replaced.

Two temporary tables of the runtime role, the same rows, the same policy shape
(`privileged OR user_id = current user`), FORCE ROW LEVEL SECURITY: one reads the settings
with `current_setting()` as every policy did before, the other through
`app_verified_setting()`. Each transaction sets a user context (two `set_config` calls, or
`app_set_context` with its proof) and reads one row by primary key, what the smallest request
does. Both loops run on one connection in one run, interleaved, so the machine's load falls
on both alike. Prints the median microseconds per transaction and the difference.

    .venv/bin/python benchmarks/context_cost.py [--transactions 3000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "treasury.settings")

import django

django.setup()

import psycopg  # noqa: E402
from django.db import connections  # noqa: E402

from treasury.rls import set_context_statement  # noqa: E402

POLICY = {
    "forgeable": "nullif(current_setting('app.{name}', true), '')",
    "verified": "nullif((SELECT app_verified_setting('app.{name}')), '')",
}
ROWS = 10_000


def prepare(conn: psycopg.Connection, users: list[str]) -> None:
    for table, setting in POLICY.items():
        role = setting.format(name="role")
        user = setting.format(name="user_id") + "::uuid"
        conn.execute(f"CREATE TEMP TABLE {table} (id bigint PRIMARY KEY, user_id uuid NOT NULL)")
        conn.execute(
            f"INSERT INTO {table} SELECT g, (%s::uuid[])[1 + g %% %s]"
            " FROM generate_series(1, %s) g",
            [users, len(users), ROWS],
        )
        conn.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        conn.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        conn.execute(
            f"CREATE POLICY {table}_owner ON {table} USING"
            f" (coalesce({role} IN ('admin', 'system'), false) OR user_id = {user})"
        )
    conn.commit()


def loop(conn: psycopg.Connection, table: str, users: list[str], count: int) -> float:
    """Microseconds per transaction."""
    started = time.perf_counter()
    for n in range(count):
        user = users[n % len(users)]
        with conn.transaction():
            if table == "forgeable":
                conn.execute(
                    "SELECT set_config('app.user_id', %s, true),"
                    " set_config('app.role', 'user', true)",
                    [user],
                )
            else:
                expression, params = set_context_statement(conn, user_id=user, role="user")
                conn.execute(f"SELECT {expression}", params)
            conn.execute(f"SELECT user_id FROM {table} WHERE id = %s", [1 + n % ROWS]).fetchall()
    return (time.perf_counter() - started) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--transactions", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    params = connections["default"].get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    users = [str(uuid.uuid4()) for _ in range(64)]
    with psycopg.connect(**params) as conn:
        prepare(conn, users)
        times: dict[str, list[float]] = {table: [] for table in POLICY}
        for _ in range(args.rounds):
            for table in POLICY:
                times[table].append(loop(conn, table, users, args.transactions))
    forgeable, verified = (statistics.median(times[t]) for t in POLICY)
    print(f"{'context':<10} {'µs per transaction (median of rounds)':>40}")
    print(f"{'forgeable':<10} {forgeable:>40.1f}")
    print(f"{'verified':<10} {verified:>40.1f}")
    extra = verified - forgeable
    print(f"verified costs {extra:+.1f} µs per transaction ({verified / forgeable:.2f}x)")


if __name__ == "__main__":
    main()
