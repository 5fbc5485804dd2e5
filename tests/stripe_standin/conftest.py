"""Fixtures: a running stand-in, a ``stripe`` client pointed at it, and a webhook receiver."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import stripe

from treasury.stripe_standin import RunningStandin, start_standin

WEBHOOK_SECRET = "whsec_standin_tests"
Control = Callable[..., tuple[int, dict[str, Any]]]


@pytest.fixture
def stripe_standin() -> Iterator[RunningStandin]:
    running = start_standin(port=0)
    yield running
    running.stop()


@pytest.fixture
def stripe_client(stripe_standin: RunningStandin) -> stripe.StripeClient:
    base = stripe_standin.base_url
    # No retries: a test that sees an error must see the stand-in's first answer.
    return stripe.StripeClient(
        "sk_test_standin", base_addresses={"api": base, "connect": base}, max_network_retries=0
    )


def http_json(
    method: str, url: str, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    """One raw request; answers ``(status, decoded JSON)`` for errors too."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data, headers or {}, method=method)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - local URL
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture
def standin_control(stripe_standin: RunningStandin) -> Control:
    """Call the control API: ``standin_control("POST", "/_standin/hold", {"hold": True})``."""

    def call(method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        return http_json(method, stripe_standin.base_url + path, body if method == "POST" else None)

    return call


class WebhookReceiver:
    """A tiny HTTP server that records every POST it gets, as the project's endpoint would."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[str, str | None]] = []  # (raw body, Stripe-Signature)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                receiver.deliveries.append((body, self.headers.get("Stripe-Signature")))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/webhook"
        serve = self._server.serve_forever
        threading.Thread(target=serve, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for body, _ in self.deliveries]

    def wait_for(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.deliveries) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.events()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def webhook_receiver(stripe_standin: RunningStandin) -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    stripe_standin.configure_webhook(receiver.url, WEBHOOK_SECRET)
    yield receiver
    receiver.close()
