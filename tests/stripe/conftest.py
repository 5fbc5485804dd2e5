"""Fixtures: the Stripe stand-in with the app's settings pointed at it, signed webhook
deliveries built by the test, and the app served over real HTTP for the stand-in to call."""

from __future__ import annotations

import json
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

import pytest
import stripe
from django.db import connections
from django.test import Client, override_settings

from splits.models import SplitRule
from splits.services import create_split_rule
from treasury.models import User
from treasury.rls import system_context
from treasury.stripe.client import stripe_client
from treasury.stripe_standin import RunningStandin, start_standin
from treasury.stripe_standin.webhooks import signature_header

WEBHOOK_SECRET = "whsec_treasury_tests"
WEBHOOK_PATH = "/api/stripe/webhook"


@pytest.fixture
def stripe_standin() -> Iterator[RunningStandin]:
    running = start_standin(port=0)
    yield running
    running.stop()


@pytest.fixture
def stripe_settings(stripe_standin: RunningStandin) -> Iterator[RunningStandin]:
    """The app's Stripe settings pointed at the stand-in (the library's globals follow)."""
    with override_settings(
        STRIPE_API_BASE=stripe_standin.base_url,
        STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
        STRIPE_MAX_NETWORK_RETRIES=0,
    ):
        yield stripe_standin


@pytest.fixture
def stripe_api(stripe_settings: RunningStandin) -> stripe.StripeClient:
    return stripe_client()


def control(standin: RunningStandin, path: str, body: dict[str, Any] | None = None) -> Any:
    """The stand-in's control API (POST with a JSON body, or GET)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(  # noqa: S310 - a local URL
        standin.base_url + path, data, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return json.loads(response.read())


def signed_headers(payload: str, *, secret: str = WEBHOOK_SECRET, at: int | None = None) -> dict:
    stamp = int(time.time()) if at is None else at
    return {"Stripe-Signature": signature_header(payload, secret, stamp)}


def deliver(
    client: Client,
    event: dict[str, Any] | str,
    *,
    secret: str = WEBHOOK_SECRET,
    at: int | None = None,
) -> Any:
    """POST an event to the webhook through Django's test client, signed like Stripe."""
    payload = event if isinstance(event, str) else json.dumps(event)
    return client.post(
        WEBHOOK_PATH,
        data=payload,
        content_type="application/json",
        headers=signed_headers(payload, secret=secret, at=at),
    )


def events_of(api: stripe.StripeClient, object_id: str) -> dict[str, dict[str, Any]]:
    """The stand-in's events about one object (or whose object names it), by type."""
    found: dict[str, dict[str, Any]] = {}
    for event in api.v1.events.list(params={"limit": 100}).data:
        data = event.to_dict()
        obj = data["data"]["object"]
        if object_id in (obj.get("id"), obj.get("charge"), obj.get("latest_charge")):
            found.setdefault(data["type"], data)
    return found


def pay(
    standin: RunningStandin, *, amount_cents: int, currency: str = "usd", **metadata: Any
) -> dict[str, Any]:
    """A buyer pays (the stand-in's control shortcut); returns the succeeded intent with its
    charge expanded."""
    body = {"amount": amount_cents, "currency": currency, "metadata": metadata}
    return control(standin, "/_standin/charges", body)


def split_rule(
    *,
    owner: User,
    recipients: list[tuple[User, int]],
    platform_fee_bps: int = 1000,
    stripe_fee_bearer: str = "platform",
    is_default: bool = False,
) -> SplitRule:
    with system_context():
        return create_split_rule(
            owner=owner,
            name=f"rule of {owner.email}",
            recipients=[{"recipient_id": str(u.pk), "share_bps": bps} for u, bps in recipients],
            platform_fee_bps=platform_fee_bps,
            stripe_fee_bearer=stripe_fee_bearer,
            dispute_loss_bearer="platform",
            is_default=is_default,
        )


# --- the app over real HTTP, for the stand-in to deliver webhooks to ---


class _PooledWSGIServer(WSGIServer):
    """Serves each request from one of a fixed set of worker threads, as an app server's
    workers do, so that each worker keeps its database connection between requests
    (CONN_MAX_AGE): a fresh PostgreSQL backend per request would cost more than the
    request itself."""

    def __init__(self, address: tuple[str, int], workers: int = 8) -> None:
        super().__init__(address, _QuietHandler)
        self._requests: queue.Queue[tuple[Any, Any] | None] = queue.Queue()
        self._workers = [threading.Thread(target=self._work, daemon=True) for _ in range(workers)]
        for worker in self._workers:
            worker.start()

    def process_request(self, request: Any, client_address: Any) -> None:
        self._requests.put((request, client_address))

    def _work(self) -> None:
        while (item := self._requests.get()) is not None:
            request, client_address = item
            try:
                self.finish_request(request, client_address)
            except Exception:
                self.handle_error(request, client_address)
            finally:
                self.shutdown_request(request)
        connections.close_all()  # this worker's connections, before the database is dropped

    def server_close(self) -> None:
        super().server_close()
        for _ in self._workers:
            self._requests.put(None)
        for worker in self._workers:
            worker.join()


class _QuietHandler(WSGIRequestHandler):
    # wsgiref writes headers and body separately: with Nagle's algorithm on, an answer can
    # wait for the client's delayed ACK.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass


class LiveApp:
    def __init__(self) -> None:
        from treasury.wsgi import application

        self._server = _PooledWSGIServer(("127.0.0.1", 0))
        self._server.set_app(application)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        serve = self._server.serve_forever
        self._thread = threading.Thread(target=serve, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def post(self, path: str, payload: str, headers: dict[str, str]) -> tuple[int, Any]:
        request = urllib.request.Request(  # noqa: S310 - a local URL
            self.url + path,
            payload.encode(),
            {"Content-Type": "application/json", **headers},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@pytest.fixture
def live_app(committed_db: None, stripe_settings: RunningStandin) -> Iterator[LiveApp]:
    """`treasury.wsgi.application` on 127.0.0.1 from a pooled wsgiref server, with real
    commits (`committed_db`), and the stand-in delivering its webhooks to it. pytest-django's
    live_server cannot be used: its database flush truncates, and append-only tables refuse."""
    runtime = connections.settings["default"]
    saved_max_age = runtime.get("CONN_MAX_AGE", 0)
    runtime["CONN_MAX_AGE"] = None  # the workers keep their connections until they stop
    app = LiveApp()
    stripe_settings.configure_webhook(app.url + WEBHOOK_PATH, WEBHOOK_SECRET)
    yield app
    stripe_settings.configure_webhook(None, None)
    app.stop()
    runtime["CONN_MAX_AGE"] = saved_max_age


def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()
