"""Load for the PostgreSQL-restart test, run as a subprocess on the scratch server.

`python tests/faults/load_client.py STOP_FILE`: THREADS clients post charge-shaped
transactions through `post_transaction` until STOP_FILE exists. A client whose posting fails
(the server went away mid-statement or mid-COMMIT) reconnects and posts the same key again
until it succeeds: the idempotency key makes "did my commit land?" safe to ask that way.
Prints `posted N` as it goes, then one JSON line: the keys, the amounts, the errors seen.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "treasury.settings")

import django

django.setup()

from django.db import connection  # noqa: E402

from ledger.chart import platform_code, user_code  # noqa: E402
from ledger.services import credit, debit, post_transaction  # noqa: E402
from tests.factories import ArtistFactory, HostFactory  # noqa: E402
from treasury.rls import system_context  # noqa: E402

THREADS = 4
KEY_DEADLINE_SECONDS = 90
MAX_KEYS_PER_CLIENT = 5000


def charge(host: str, artist: str, gross: int) -> list:
    """A charge as the Stripe handler posts it: gross in, split 80/10/10, Stripe's fee."""
    fee = gross // 10
    artist_share = gross // 10
    stripe_fee = 30 + gross * 29 // 1000
    stripe, revenue = platform_code("stripe_balance", "USD"), platform_code("fee_revenue", "USD")
    return [
        debit(stripe, gross, "USD"),
        credit(host, gross - fee - artist_share, "USD"),
        credit(artist, artist_share, "USD"),
        credit(revenue, fee, "USD"),
        debit(platform_code("processing_fees", "USD"), stripe_fee, "USD"),
        credit(stripe, stripe_fee, "USD"),
    ]


def main() -> None:
    stop_file = Path(sys.argv[1])
    run = uuid.uuid4().hex[:8]
    with system_context():
        host, artist = HostFactory(), ArtistFactory()
    connection.close()
    host_code, artist_code = (
        user_code(host.pk, "payable", "USD"),
        user_code(artist.pk, "payable", "USD"),
    )
    lock = threading.Lock()
    posted: dict[str, int] = {}
    errors: Counter[str] = Counter()
    failed: list[str] = []

    def client(number: int) -> None:
        for n in range(MAX_KEYS_PER_CLIENT):
            if stop_file.exists():
                break
            key, gross = f"restart:{run}:{number}:{n}", 1000 + 7 * n + number
            deadline = time.monotonic() + KEY_DEADLINE_SECONDS
            while True:
                try:
                    post_transaction(
                        idempotency_key=key,
                        event_source="fault_test",
                        entries=charge(host_code, artist_code, gross),
                    )
                    break
                except Exception as exc:
                    with lock:
                        errors[type(exc).__name__] += 1
                    connection.close()  # a broken connection is not reused
                    if time.monotonic() > deadline:
                        with lock:
                            failed.append(key)
                        return
                    time.sleep(0.05)
            with lock:
                posted[key] = gross
                if len(posted) % 10 == 0:
                    print(f"posted {len(posted)}", flush=True)
        connection.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(
        json.dumps(
            {
                "host": host_code,
                "artist": artist_code,
                "posted": posted,
                "errors": dict(errors),
                "failed": failed,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
