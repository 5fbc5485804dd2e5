"""Signed webhook deliveries from one background thread, in order, with hold and release.

One sender thread keeps deliveries in the order events were queued (Stripe makes no such
promise; tests that want disorder ask for it with hold + release). A failed attempt is
recorded and retried a few times with a short backoff, then given up: the stand-in must
never fall over because the project's server is down.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from typing import Any

ATTEMPTS = 3
BACKOFF_SECONDS = 0.05
TIMEOUT_SECONDS = 5.0
RELEASE_ORDERS = ("created", "reverse", "shuffle")


def signature_header(payload: str, secret: str, timestamp: int) -> str:
    """Stripe's scheme: ``t=<ts>,v1=<HMAC-SHA256 of "<ts>.<payload>">``."""
    signed = f"{timestamp}.{payload}".encode()
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


class WebhookSender:
    """Queues events and POSTs them to the configured URL from a daemon thread."""

    def __init__(self, url: str | None = None, secret: str | None = None) -> None:
        self.url = url
        self.secret = secret
        self.attempts: list[dict[str, Any]] = []
        self._queue: deque[dict[str, Any]] = deque()
        self._held: list[dict[str, Any]] = []
        self._holding = False
        self._busy = False
        self._closed = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="standin-webhooks", daemon=True)
        self._thread.start()

    def configure(self, url: str | None, secret: str | None) -> None:
        with self._cond:
            self.url, self.secret = url, secret

    def submit(self, event: dict[str, Any]) -> None:
        with self._cond:
            if self._holding:
                self._held.append(event)
            else:
                self._enqueue([event])

    def hold(self, holding: bool) -> None:
        """Start or stop holding; stopping sends what is still held, in created order."""
        with self._cond:
            self._holding = holding
            if not holding:
                self._enqueue(self._held)
                self._held = []

    def release(self, order: str = "created", seed: int | None = None, duplicates: int = 1) -> int:
        """Send the held events ``duplicates`` times each, in the given order."""
        with self._cond:
            events = [event for event in self._held for _ in range(duplicates)]
            self._held = []
            if order == "reverse":
                events.reverse()
            elif order == "shuffle":
                random.Random(seed).shuffle(events)
            self._enqueue(events)
            return len(events)

    def redeliver(self, event: dict[str, Any]) -> None:
        with self._cond:
            self._enqueue([event])

    def attempts_for(self, event_id: str) -> list[dict[str, Any]]:
        with self._cond:
            return [dict(a) for a in self.attempts if a["event_id"] == event_id]

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Block until nothing is queued or in flight (held events do not count)."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._busy, timeout)

    def clear(self) -> None:
        with self._cond:
            self._queue.clear()
            self._held = []
            self._holding = False
            self.attempts = []

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=TIMEOUT_SECONDS)

    def _enqueue(self, events: list[dict[str, Any]]) -> None:
        self._queue.extend(events)
        self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._busy = False
                self._cond.notify_all()
                self._cond.wait_for(lambda: self._queue or self._closed)
                if self._closed:
                    return
                event = self._queue.popleft()
                self._busy = True
                url, secret = self.url, self.secret
            if url:
                self._deliver(event, url, secret)

    def _deliver(self, event: dict[str, Any], url: str, secret: str | None) -> None:
        for attempt in range(ATTEMPTS):
            status, error = self._post(event, url, secret)
            with self._cond:
                record = {"event_id": event["id"], "url": url, "status": status, "error": error}
                self.attempts.append({**record, "at": time.time()})
            if status is not None and 200 <= status < 300:
                return
            if attempt + 1 < ATTEMPTS:
                time.sleep(BACKOFF_SECONDS * 2**attempt)

    @staticmethod
    def _post(event: dict[str, Any], url: str, secret: str | None) -> tuple[int | None, str | None]:
        payload = json.dumps(event, indent=2)
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "Stripe/1.0"}
        if secret:
            headers["Stripe-Signature"] = signature_header(payload, secret, int(time.time()))
        if not url.startswith(("http://", "https://")):
            return None, "webhook URL must be http(s)"
        # Scheme checked just above: file: and custom schemes never reach urlopen.
        request = urllib.request.Request(url, payload.encode(), headers, method="POST")  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
                return response.status, None
        except urllib.error.HTTPError as exc:
            return exc.code, f"HTTP {exc.code}"
        except (OSError, ValueError) as exc:
            return None, str(exc)
