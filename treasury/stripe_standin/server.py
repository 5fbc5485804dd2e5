"""A local, stateful stand-in for the part of Stripe (Connect) that the treasury calls.

No Django here: the management command ``stripe_standin`` and the tests both call
``start_standin``, which serves on 127.0.0.1 from a daemon thread.

Stripe's API, under ``/v1/`` (form-encoded, ``Authorization: Bearer sk_...``, optional
``Stripe-Account`` and ``Idempotency-Key``; answers in Stripe's shapes and error shape):
  GET  /v1/account                    the platform, or the account in Stripe-Account
  GET|POST /v1/accounts, GET /v1/accounts/{id}
  POST /v1/account_links              url -> GET /_standin/onboard/{id}?return_url=...
  GET|POST /v1/customers, GET /v1/customers/{id}
  GET|POST /v1/payment_intents, GET /v1/payment_intents/{id}, POST .../{id}/confirm
  GET  /v1/charges, /v1/charges/{id}, /v1/payment_methods/{id}
  GET|POST /v1/refunds, GET /v1/refunds/{id}
  GET|POST /v1/transfers, GET /v1/transfers/{id}
  GET|POST /v1/transfers/{id}/reversals, GET /v1/transfers/{id}/reversals/{reversal_id}
  GET|POST /v1/payouts, GET /v1/payouts/{id}
  GET  /v1/balance, /v1/balance_transactions, /v1/balance_transactions/{id}
  GET  /v1/disputes, /v1/disputes/{id}, /v1/events, /v1/events/{id}
Payment methods: ``pm_card_visa`` (any ``pm_card_*``) succeeds; ``pm_card_chargeDeclined``
and ``pm_card_chargeDeclinedInsufficientFunds`` answer 402 ``card_declined``.

Control API, under ``/_standin/`` (JSON in and out, no authentication, tests only):
  POST /_standin/webhook              {url, secret}: where events go and how they are signed
  POST /_standin/hold                 {hold: true|false}: queue events instead of sending;
                                      false sends what is still held, in created order
  POST /_standin/release              {order: created|reverse|shuffle, seed?, duplicates?}
                                      sends the held events, each ``duplicates`` times
  GET  /_standin/events               every event with its delivery attempts
  POST /_standin/events/{id}/deliver  send one event again (a duplicate delivery)
  POST /_standin/accounts/{id}/complete_onboarding   flags on, sends account.updated
  POST /_standin/accounts/{id}/reject {reason?}: flags off, requirements.disabled_reason
  GET  /_standin/onboard/{id}         the account link's page: completes onboarding and
                                      redirects to ``return_url``
  POST /_standin/charges              {amount, currency, customer?, metadata?,
                                      transfer_group?}: a buyer pays (succeeded intent +
                                      charge, latest_charge.balance_transaction expanded)
  POST /_standin/charges/{id}/dispute {amount?, reason?}: dispute needs_response, debits
                                      amount + 1500 fee, charge.dispute.created
  POST /_standin/disputes/{id}/update {status?}: under_review, charge.dispute.updated
  POST /_standin/disputes/{id}/close  {status: won|lost}: charge.dispute.closed; won
                                      credits the amount back
  POST /_standin/payouts/{id}/paid    payout.paid
  POST /_standin/payouts/{id}/fail    {failure_code?}: payout.failed (a paid one too), money
                                      back on the account
  POST /_standin/reset                wipe all state, queued events and attempts
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .forms import Params, StripeError, not_found, parse_form
from .state import StripeStandin

__all__ = ["RunningStandin", "StripeStandin", "start_standin"]

logger = logging.getLogger(__name__)
Handler = Callable[..., dict[str, Any]]
Route = tuple[str, re.Pattern[str], Handler]


def _route(method: str, template: str, handler: Handler) -> Route:
    return method, re.compile("^" + re.sub(r"\{\w+\}", "([^/]+)", template) + "$"), handler


def _readable(kind: str, plural: str) -> list[Route]:
    """Stripe's list and retrieve endpoints, the same for every resource."""
    url = f"/v1/{plural}"
    return [
        _route("GET", url, lambda s, p, a: s.list_objects(kind, p, a, url)),
        _route("GET", url + "/{id}", lambda s, p, a, object_id: s.retrieve(kind, object_id, a)),
    ]


def _reversals(s: StripeStandin, p: Params, a: str | None, transfer_id: str) -> dict[str, Any]:
    url = f"/v1/transfers/{transfer_id}/reversals"
    s.retrieve("transfer", transfer_id, a)
    return s.list_objects("transfer_reversal", p, a, url, where={"transfer": transfer_id})


def _reversal(
    s: StripeStandin, p: Params, a: str | None, transfer_id: str, reversal_id: str
) -> dict[str, Any]:
    reversal = s.retrieve("transfer_reversal", reversal_id, a)
    if reversal["transfer"] != transfer_id:
        raise not_found("transfer_reversal", reversal_id)
    return reversal


S = StripeStandin
API_ROUTES: list[Route] = [
    _route("GET", "/v1/account", lambda s, p, a: s.current_account(a)),
    _route("POST", "/v1/accounts", S.create_account),
    *_readable("account", "accounts"),
    _route("POST", "/v1/account_links", S.create_account_link),
    _route("POST", "/v1/customers", S.create_customer),
    *_readable("customer", "customers"),
    _route("POST", "/v1/payment_intents", S.create_payment_intent),
    _route("POST", "/v1/payment_intents/{id}/confirm", S.confirm_payment_intent),
    *_readable("payment_intent", "payment_intents"),
    *_readable("charge", "charges"),
    *_readable("payment_method", "payment_methods"),
    _route("POST", "/v1/refunds", S.create_refund),
    *_readable("refund", "refunds"),
    _route("POST", "/v1/transfers", S.create_transfer),
    *_readable("transfer", "transfers"),
    _route("POST", "/v1/transfers/{id}/reversals", S.create_transfer_reversal),
    _route("GET", "/v1/transfers/{id}/reversals", _reversals),
    _route("GET", "/v1/transfers/{id}/reversals/{reversal_id}", _reversal),
    _route("POST", "/v1/payouts", S.create_payout),
    *_readable("payout", "payouts"),
    _route("GET", "/v1/balance", lambda s, p, a: s.balance(a)),
    *_readable("balance_transaction", "balance_transactions"),
    *_readable("dispute", "disputes"),
    *_readable("event", "events"),
]
CONTROL_ROUTES: list[Route] = [
    _route("POST", "/_standin/webhook", S.configure_webhook),
    _route("POST", "/_standin/hold", S.hold_events),
    _route("POST", "/_standin/release", S.release_events),
    _route("GET", "/_standin/events", S.delivery_log),
    _route("POST", "/_standin/events/{id}/deliver", S.redeliver_event),
    _route("POST", "/_standin/accounts/{id}/complete_onboarding", S.complete_onboarding),
    _route("POST", "/_standin/accounts/{id}/reject", S.reject_account),
    _route("POST", "/_standin/charges", S.create_paid_charge),
    _route("POST", "/_standin/charges/{id}/dispute", S.create_dispute),
    _route("POST", "/_standin/disputes/{id}/update", S.update_dispute),
    _route("POST", "/_standin/disputes/{id}/close", S.close_dispute),
    _route("POST", "/_standin/payouts/{id}/paid", S.settle_payout),
    _route("POST", "/_standin/payouts/{id}/fail", S.fail_payout),
    _route("POST", "/_standin/reset", S.reset),
]


def _match(routes: list[Route], method: str, path: str) -> tuple[Handler, tuple[str, ...]]:
    for route_method, pattern, handler in routes:
        found = pattern.match(path)
        if found and route_method == method:
            return handler, found.groups()
    message = f"Unrecognized request URL ({method}: {path})."
    raise StripeError(404, message)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, standin: StripeStandin) -> None:
        super().__init__(("127.0.0.1", port), _RequestHandler)
        self.standin = standin


class _RequestHandler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("stripe standin: " + format, *args)

    def _handle(self, method: str) -> None:
        url = urlsplit(self.path)
        try:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            if method == "GET" and url.path.startswith("/_standin/onboard/"):
                return self._onboard(url.path.rsplit("/", 1)[-1], url.query)
            if url.path.startswith("/_standin/"):
                status, answer = self._control(method, url.path, body)
            else:
                form = "&".join(part for part in (url.query, body) if part)
                status, answer = self._api(method, url.path, form)
        except StripeError as exc:
            status, answer = exc.status, exc.body()
        except Exception:  # never let one bad request take the stand-in down
            logger.exception("stripe standin: %s %s failed", method, self.path)
            status, answer = 500, StripeError(500, "Internal error", type="api_error").body()
        self._send(status, json.dumps(answer, indent=2).encode(), "application/json")

    def _api(self, method: str, path: str, form: str) -> tuple[int, dict[str, Any]]:
        authorization = self.headers.get("Authorization", "")
        if not authorization.startswith("Bearer sk_"):
            message = "You did not provide a valid API key: send 'Authorization: Bearer sk_...'."
            raise StripeError(401, message)
        handler, args = _match(API_ROUTES, method, path)
        params = Params(parse_form(form))
        key = self.headers.get("Idempotency-Key") if method == "POST" else None
        fingerprint = f"{method} {path} {json.dumps(params.data, sort_keys=True)}"
        account = self.headers.get("Stripe-Account")
        return self.server.standin.dispatch(
            handler, params, account, args, idempotency_key=key, fingerprint=fingerprint
        )

    def _control(self, method: str, path: str, body: str) -> tuple[int, dict[str, Any]]:
        handler, args = _match(CONTROL_ROUTES, method, path)
        try:
            data = json.loads(body or "{}")
        except json.JSONDecodeError as exc:
            raise StripeError(400, f"Malformed JSON: {exc}") from None
        if not isinstance(data, dict):
            raise StripeError(400, "The body must be a JSON object.")
        return self.server.standin.dispatch(handler, Params(data), None, args)

    def _onboard(self, account_id: str, query: str) -> None:
        standin = self.server.standin
        status, answer = standin.dispatch(S.complete_onboarding, Params(), None, (account_id,))
        return_url = parse_qs(query).get("return_url", [""])[0]
        if status != 200 or not return_url:
            page = "Onboarding complete." if status == 200 else answer["error"]["message"]
            return self._send(status, page.encode(), "text/plain; charset=utf-8")
        self._send(302, b"", "text/plain", {"Location": return_url})

    def _send(
        self, status: int, payload: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        for name, value in {"Content-Type": content_type, **(headers or {})}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class RunningStandin:
    """A started stand-in: ``base_url`` for the stripe library, ``state`` for inspection."""

    def __init__(self, server: _Server, state_file: Path | None = None) -> None:
        self._server = server
        self.state_file = state_file
        self.state = server.standin
        self.base_url = self.state.base_url = f"http://127.0.0.1:{server.server_address[1]}"
        # A short poll keeps stop() quick: shutdown() waits for the loop's next poll.
        poll = {"poll_interval": 0.05}
        self._thread = threading.Thread(target=server.serve_forever, kwargs=poll, daemon=True)
        self._thread.start()

    def configure_webhook(self, url: str | None, secret: str | None) -> None:
        self.state.webhooks.configure(url, secret)

    def wait_for_webhooks(self, timeout: float = 5.0) -> bool:
        """True once every queued event has been delivered or given up on."""
        return self.state.webhooks.wait_idle(timeout)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        self.state.close()
        if self.state_file is not None:
            self.state.save(self.state_file)


def start_standin(
    *,
    port: int = 0,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
    state_file: Path | None = None,
    instant_payouts_paid_after: float | None = None,
) -> RunningStandin:
    """Serve the stand-in on 127.0.0.1:``port`` (0 picks a free port) from a daemon thread.

    With ``state_file``, start from the state saved there (if any) and save it on stop. With
    ``instant_payouts_paid_after`` (seconds), instant payouts are paid by themselves."""
    standin = StripeStandin(
        webhook_url=webhook_url,
        webhook_secret=webhook_secret,
        instant_payouts_paid_after=instant_payouts_paid_after,
    )
    if state_file is not None:
        standin.load(state_file)
    return RunningStandin(_Server(port, standin), state_file)
