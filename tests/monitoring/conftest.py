"""Fixtures: the Stripe stand-in (the refunds and disputes fixtures: sellers, connected
accounts, charges booked as their events would), django-q2 running jobs in-process, and a
local Slack incoming webhook that records what it is sent."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.utils import timezone

from tests.disputes.conftest import (  # noqa: F401  (fixtures, registered by import)
    stripe_api,
    stripe_settings,
    stripe_standin,
)


class SlackReceiver:
    """A tiny Slack incoming webhook on 127.0.0.1: every POSTed JSON body is kept. Answers
    `status` (200 unless a test makes Slack fail)."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if receiver.status == 200:
                    receiver.messages.append(json.loads(body))
                self.send_response(receiver.status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/services/T000/B000/xyz"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def texts(self) -> list[str]:
        return [m["text"] for m in self.messages]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@pytest.fixture
def slack(settings: Any) -> Iterator[SlackReceiver]:
    receiver = SlackReceiver()
    settings.SLACK_WEBHOOK_URL = receiver.url
    settings.OPS_EMAILS = ["ops@treasury.test"]
    yield receiver
    receiver.stop()


@pytest.fixture
def period_start() -> datetime:
    """The start of a reconciliation window that holds only this test's money: the test
    database keeps what earlier tests committed. Whole seconds, as Stripe's `created`."""
    return timezone.now().replace(microsecond=0) - timedelta(seconds=1)
