"""The stand-in's memory: Stripe objects, balances per account and currency, and events.

Simplifications (on purpose, so tests stay deterministic):
- A charge's net is added to the available balance at once: there is no pending period.
- Refunds and disputes may take a balance below zero, as Stripe debits them regardless;
  transfers, transfer reversals and payouts refuse to (``balance_insufficient``).
- Objects belong to the platform (owner ``None``) or to the connected account named in
  ``Stripe-Account``; a caller sees only its own, except that the platform sees accounts.
- Every object starts as a deep copy of Stripe's example in ``shapes.json`` (Stripe's
  OpenAPI fixtures, MIT, with example values that point at objects the stand-in does not
  have nulled: charge ``source``/``transfer_data``/``shipping``/``receipt_url``, customer
  ``discount``/``address``/``currency``/``shipping``, payment intent ``next_action`` and the
  like), so keys and types are Stripe's.
- A won dispute returns the disputed amount; the dispute fee is kept either way.
- All events go to the one configured webhook URL, Connect events included.
"""

from __future__ import annotations

import copy
import functools
import json
import operator
import secrets
import string
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import urlencode

from .forms import Params, StripeError, not_found
from .webhooks import RELEASE_ORDERS, WebhookSender

SHAPES: dict[str, dict[str, Any]] = json.loads(Path(__file__).with_name("shapes.json").read_text())
API_VERSION = "2026-08-26.dahlia"  # the version stripe-python 15 pins
DISPUTE_FEE_CENTS = 1500  # Stripe's dispute fee: $15.00, and ¥1,500 in Japan
# Stripe's currencies without a minor unit: amounts are whole yen, won, ...
ZERO_DECIMAL_CURRENCIES = frozenset(
    {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd"}
    | {"vuv", "xaf", "xof", "xpf"}
)
COUNTRY_CURRENCIES = {"US": "usd", "GB": "gbp", "JP": "jpy", "CA": "cad", "AU": "aud"}
DECLINE_CODES = {
    "pm_card_chargeDeclined": "generic_decline",
    "pm_card_chargeDeclinedInsufficientFunds": "insufficient_funds",
}
REPORTING_CATEGORIES = {
    "payment": "charge",
    "payment_refund": "refund",
    "transfer_refund": "transfer_reversal",
    "payout_failure": "payout_reversal",
}
PAYOUT_FAILURES = {
    "account_closed": "The bank account has been closed.",
    "no_account": "The bank account details on file are probably incorrect.",
}
OPEN_DISPUTE_STATUSES = ("needs_response", "under_review")
LIST_FILTERS = {
    "balance_transaction": ("type", "source", "currency"),
    "charge": ("customer", "payment_intent", "transfer_group"),
    "dispute": ("charge", "payment_intent"),
    "event": ("type",),
    "payment_intent": ("customer",),
    "payout": ("status",),
    "refund": ("charge", "payment_intent"),
    "transfer": ("destination", "transfer_group"),
}
CREATED_BOUNDS = {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}

P = ParamSpec("P")
R = TypeVar("R")
Obj = dict[str, Any]


def stripe_fee_cents(amount_cents: int, currency: str) -> int:
    """Stripe's card fee, 2.9% + 30 (3.6% for zero-decimal currencies), rounded half up."""
    if currency in ZERO_DECIMAL_CURRENCIES:
        return (amount_cents * 36 + 500) // 1000
    return (amount_cents * 29 + 500) // 1000 + 30


def new_id(prefix: str) -> str:
    alphabet = string.ascii_letters + string.digits
    length = 16 if prefix == "acct" else 24  # the lengths Stripe's own ids have
    return f"{prefix}_" + "".join(secrets.choice(alphabet) for _ in range(length))


def sublist(url: str) -> Obj:
    return {"object": "list", "data": [], "has_more": False, "url": url}


def _metadata(params: Params) -> dict[str, str]:
    # Stripe stores metadata values as strings and drops keys set to "".
    return {key: str(value) for key, value in params.mapping("metadata").items() if value != ""}


def _texts(params: Params, *names: str) -> Obj:
    return {name: params.text(name) for name in names}


def _pick(obj: Obj, *names: str) -> Obj:
    return {name: copy.deepcopy(obj[name]) for name in names}


def _locked(
    method: Callable[Concatenate[StripeStandin, P], R],
) -> Callable[Concatenate[StripeStandin, P], R]:
    @functools.wraps(method)
    def wrapper(self: StripeStandin, *args: P.args, **kwargs: P.kwargs) -> R:
        with self.lock:
            return method(self, *args, **kwargs)

    return wrapper


class StripeStandin:
    """All state behind one re-entrant lock; every public method takes it.

    Handlers share one signature, ``(params, account, *path_ids) -> object``, so that the
    server can route to them from a table; ``account`` is the ``Stripe-Account`` header.
    """

    def __init__(
        self,
        *,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        instant_payouts_paid_after: float | None = None,
    ):
        self.lock = threading.RLock()
        self.base_url = ""
        self.webhooks = WebhookSender(webhook_url, webhook_secret)
        # Stripe pays an instant payout out within minutes and says so with `payout.paid`.
        # Tests settle payouts through the control API; the demo has them paid by themselves.
        self.instant_payouts_paid_after = instant_payouts_paid_after
        self._timers: list[threading.Timer] = []
        self._wipe()

    def _wipe(self) -> None:
        self._objects: dict[str, Obj] = {}
        self._owners: dict[str, str | None] = {}
        self._balances: dict[tuple[str | None, str], int] = {}
        self._idempotent: dict[tuple[str | None, str], tuple[str, int, Obj]] = {}
        platform = self._new_account(type="standard", email="platform@standin.test")
        self.platform_id: str = platform["id"]
        self._onboard(platform, enabled=True, disabled_reason=None)

    # -- dispatch, storage, rendering ---------------------------------------------------

    @_locked
    def dispatch(
        self,
        handler: Callable[..., Obj],
        params: Params,
        account: str | None,
        path_ids: tuple[str, ...] = (),
        *,
        idempotency_key: str | None = None,
        fingerprint: str = "",
    ) -> tuple[int, Obj]:
        """Run one handler; replay the saved answer when an idempotency key comes back."""
        saved = self._idempotent.get((account, idempotency_key or ""))
        if idempotency_key and saved and saved[0] != fingerprint:
            message = (
                "Keys for idempotent requests can only be used with the same parameters they "
                f"were first used with. Try using a key other than '{idempotency_key}'."
            )
            return 400, StripeError(400, message, type="idempotency_error").body()
        if idempotency_key and saved:
            return saved[1], copy.deepcopy(saved[2])
        try:
            if account and self._objects.get(account, {}).get("object") != "account":
                raise StripeError(403, f"No such account: '{account}'", "account_invalid")
            status, body = 200, self._render(handler(self, params, account, *path_ids), params)
        except StripeError as exc:
            status, body = exc.status, exc.body()
        if idempotency_key:
            self._idempotent[(account, idempotency_key)] = (fingerprint, status, body)
        return status, copy.deepcopy(body)

    def _create(self, kind: str, account: str | None, object_id: str, **fields: Any) -> Obj:
        """Store Stripe's example of ``kind`` with ``fields`` written over it."""
        obj = copy.deepcopy(SHAPES[kind])
        unknown = fields.keys() - obj.keys()
        if unknown:  # a typo here would silently change the shape Stripe answers with
            raise KeyError(f"{kind} has no fields {sorted(unknown)}")
        obj.update(id=object_id, created=int(time.time()), **fields)
        self._objects[obj["id"]] = obj
        self._owners[obj["id"]] = account
        return obj

    def _get(self, kind: str, object_id: str, account: str | None, param: str = "id") -> Obj:
        obj = self._objects.get(object_id)
        owner = self._owners.get(object_id)
        # The platform sees the accounts it created; an account sees itself.
        visible = owner == account or (kind == "account" and account in (None, object_id))
        if obj is None or obj["object"] != kind or not visible:
            raise not_found(kind, object_id, param)
        return obj

    def _get_any(self, kind: str, object_id: str) -> Obj:
        """For the control API, which acts for whoever owns the object."""
        return self._get(kind, object_id, self._owners.get(object_id))

    def _render(self, obj: Obj, params: Params) -> Obj:
        rendered = copy.deepcopy(obj)
        for path in params.strings("expand"):
            self._expand(rendered, path.split("."))
        return rendered

    def _expand(self, node: Any, parts: list[str]) -> None:
        if isinstance(node, list):
            for item in node:
                self._expand(item, parts)
        elif parts and isinstance(node, dict) and parts[0] in node:
            value = node[parts[0]]
            if isinstance(value, str) and value in self._objects:
                value = node[parts[0]] = copy.deepcopy(self._objects[value])
            self._expand(value, parts[1:])

    @_locked
    def retrieve(self, kind: str, object_id: str, account: str | None) -> Obj:
        return self._get(kind, object_id, account)

    @_locked
    def list_objects(
        self, kind: str, params: Params, account: str | None, url: str, where: Obj | None = None
    ) -> Obj:
        """Newest first, ``limit`` and ``starting_after`` paging, ``created[gte]`` etc."""
        limit = min(max(params.integer("limit", 10), 1), 100)
        bounds = Params(params.mapping("created"))
        created = {op: bounds.integer(op, 0) for op in CREATED_BOUNDS if bounds.has(op)}
        equal = {f: params.text(f) for f in LIST_FILTERS.get(kind, ()) if params.has(f)}
        equal.update(where or {})
        rows = [
            obj
            for object_id, obj in reversed(self._objects.items())
            if obj["object"] == kind
            and self._owners[object_id] == account
            and object_id != self.platform_id
            and all(CREATED_BOUNDS[op](obj["created"], at) for op, at in created.items())
            and all(obj.get(name) == value for name, value in equal.items())
        ]
        after = params.text("starting_after")
        if after:
            ids = [row["id"] for row in rows]
            if after not in ids:
                raise not_found(kind, after, "starting_after")
            rows = rows[ids.index(after) + 1 :]
        return {"object": "list", "data": rows[:limit], "has_more": len(rows) > limit, "url": url}

    # -- balances and events ------------------------------------------------------------

    def _available(self, account: str | None, currency: str) -> int:
        return self._balances.get((account, currency), 0)

    def _require_funds(self, account: str | None, currency: str, amount_cents: int) -> None:
        if self._available(account, currency) < amount_cents:
            message = "You have insufficient available funds in your Stripe account."
            raise StripeError(400, message, "balance_insufficient")

    def _post_balance(
        self,
        account: str | None,
        currency: str,
        amount_cents: int,
        kind: str,
        source: str,
        fee_cents: int = 0,
        fee_description: str = "Stripe processing fees",
        category: str = "",
    ) -> Obj:
        """Record one balance transaction and move the available balance by its net."""
        fee = {"amount": fee_cents, "application": None, "currency": currency, "type": "stripe_fee"}
        net_cents = amount_cents - fee_cents
        self._balances[(account, currency)] = self._available(account, currency) + net_cents
        money = dict(amount=amount_cents, fee=fee_cents, net=net_cents, currency=currency)
        money["fee_details"] = [{**fee, "description": fee_description}] if fee_cents else []
        category = category or REPORTING_CATEGORIES.get(kind, kind)
        what = dict(type=kind, reporting_category=category, source=source, description=None)
        txn = self._create("balance_transaction", account, new_id("txn"), **money, **what)
        txn.update(status="available", available_on=txn["created"])
        return txn

    def _emit(self, event_type: str, obj: Obj, account: str | None) -> None:
        data = {"object": copy.deepcopy(obj)}
        event = self._create("event", account, new_id("evt"), type=event_type, data=data)
        event.update(api_version=API_VERSION, pending_webhooks=1 if self.webhooks.url else 0)
        event["request"] = {"id": None, "idempotency_key": None}
        if account:  # Stripe names the connected account on Connect events only
            event["account"] = account
        self.webhooks.submit(event)

    @_locked
    def balance(self, account: str | None) -> Obj:
        currencies = sorted(c for owner, c in self._balances if owner == account) or ["usd"]
        amounts = {c: self._available(account, c) for c in currencies}
        balance = copy.deepcopy(SHAPES["balance"])
        balance["available"] = [
            {"amount": a, "currency": c, "source_types": {"card": a}} for c, a in amounts.items()
        ]
        balance["pending"] = [
            {"amount": 0, "currency": c, "source_types": {"card": 0}} for c in currencies
        ]
        balance["connect_reserved"] = [{"amount": 0, "currency": c} for c in currencies]
        return balance

    # -- accounts and customers ---------------------------------------------------------

    def _onboard(self, account: Obj, *, enabled: bool, disabled_reason: str | None) -> None:
        status = "active" if enabled else "inactive"
        account["capabilities"] = {name: status for name in account["capabilities"]}
        account.update(charges_enabled=enabled, payouts_enabled=enabled)
        account["details_submitted"] = account["details_submitted"] or enabled
        account["requirements"]["disabled_reason"] = disabled_reason
        if enabled:
            account["requirements"].update(currently_due=[], eventually_due=[], past_due=[])
            account["tos_acceptance"].update(date=int(time.time()), ip="127.0.0.1")

    @_locked
    def current_account(self, account: str | None) -> Obj:
        return self._get("account", account or self.platform_id, account)

    @_locked
    def create_account(self, params: Params, account: str | None) -> Obj:
        country = (params.text("country") or "US").upper()
        account_type = params.text("type", "express", choices=("express", "custom", "standard"))
        wanted = params.mapping("capabilities") or {"card_payments": {}, "transfers": {}}
        currency = params.text("default_currency", COUNTRY_CURRENCIES.get(country, "usd"))
        controller = {"type": "application" if account_type == "express" else "account"}
        created = self._new_account(type=account_type, country=country, default_currency=currency)
        created.update(controller=controller, capabilities=dict.fromkeys(wanted, "inactive"))
        created.update(email=params.text("email"), metadata=_metadata(params))
        return created

    def _new_account(self, **fields: Any) -> Obj:
        account = self._create("account", None, new_id("acct"), **fields)
        account["external_accounts"]["url"] = f"/v1/accounts/{account['id']}/external_accounts"
        return account

    @_locked
    def create_account_link(self, params: Params, account: str | None) -> Obj:
        account_id = params.required_text("account")
        self._get("account", account_id, account, "account")
        params.required_text("type", choices=("account_onboarding", "account_update"))
        return_url = params.text("return_url")
        query = "?" + urlencode({"return_url": return_url}) if return_url else ""
        link = copy.deepcopy(SHAPES["account_link"])
        link.update(created=int(time.time()), expires_at=int(time.time()) + 300)
        link["url"] = f"{self.base_url}/_standin/onboard/{account_id}{query}"
        return link

    @_locked
    def complete_onboarding(self, params: Params, account: str | None, account_id: str) -> Obj:
        connected = self._get("account", account_id, None)
        self._onboard(connected, enabled=True, disabled_reason=None)
        self._emit("account.updated", connected, account_id)
        return connected

    @_locked
    def reject_account(self, params: Params, account: str | None, account_id: str) -> Obj:
        connected = self._get("account", account_id, None)
        reason = params.text("reason", "rejected.other")
        self._onboard(connected, enabled=False, disabled_reason=reason)
        self._emit("account.updated", connected, account_id)
        return connected

    @_locked
    def create_customer(self, params: Params, account: str | None) -> Obj:
        texts = _texts(params, "email", "name", "description", "phone")
        customer = self._create("customer", account, new_id("cus"), **texts)
        customer.update(metadata=_metadata(params), invoice_prefix=secrets.token_hex(4).upper())
        return customer

    # -- payments -----------------------------------------------------------------------

    @_locked
    def create_payment_intent(self, params: Params, account: str | None) -> Obj:
        amount_cents, currency = params.amount(), params.currency()
        fields = _texts(params, "customer", "description", "on_behalf_of", "payment_method")
        if fields["customer"]:
            self._get("customer", fields["customer"], account, "customer")
        if fields["on_behalf_of"]:
            self._get("account", fields["on_behalf_of"], None, "on_behalf_of")
        fields.update(_texts(params, "receipt_email", "transfer_group"))
        intent = self._create("payment_intent", account, new_id("pi"), **fields)
        intent.update(amount=amount_cents, currency=currency, metadata=_metadata(params))
        intent["client_secret"] = f"{intent['id']}_secret_{secrets.token_hex(12)}"
        status = "requires_confirmation" if fields["payment_method"] else "requires_payment_method"
        intent["status"] = status
        return self._confirm(intent, params, account) if params.flag("confirm") else intent

    @_locked
    def confirm_payment_intent(self, params: Params, account: str | None, intent_id: str) -> Obj:
        intent = self._get("payment_intent", intent_id, account)
        if intent["status"] not in ("requires_payment_method", "requires_confirmation"):
            message = f"This PaymentIntent's status is {intent['status']}; it cannot be confirmed."
            raise StripeError(400, message, "payment_intent_unexpected_state")
        return self._confirm(intent, params, account)

    @_locked
    def create_paid_charge(self, params: Params, account: str | None) -> Obj:
        """Control shortcut: a buyer pays, through the same path as a confirmed intent."""
        paid = Params({"payment_method": "pm_card_visa", **params.data, "confirm": True})
        paid.data["expand"] = ["latest_charge.balance_transaction"]
        return self._render(self.create_payment_intent(paid, None), paid)

    def _confirm(self, intent: Obj, params: Params, account: str | None) -> Obj:
        token = params.text("payment_method") or intent["payment_method"]
        if not token:
            message = "You cannot confirm this PaymentIntent because it's missing a payment method."
            raise StripeError(400, message, "payment_intent_unexpected_state", "payment_method")
        if token in DECLINE_CODES:
            self._decline(intent, DECLINE_CODES[token], account)
        method = self._payment_method(token, intent["customer"], account)
        charge = self._charge(intent, method["id"], account)
        intent.update(status="succeeded", amount_received=intent["amount"])
        intent.update(latest_charge=charge["id"], payment_method=method["id"])
        self._emit("charge.succeeded", charge, account)
        self._emit("payment_intent.succeeded", intent, account)
        return intent

    def _decline(self, intent: Obj, decline_code: str, account: str | None) -> None:
        message = "Your card was declined."
        error = {"type": "card_error", "code": "card_declined", "decline_code": decline_code}
        intent.update(status="requires_payment_method", payment_method=None)
        intent["last_payment_error"] = {**error, "message": message}
        self._emit("payment_intent.payment_failed", intent, account)
        extra = {"decline_code": decline_code, "payment_intent": copy.deepcopy(intent)}
        raise StripeError(402, message, "card_declined", None, "card_error", extra)

    def _payment_method(self, token: str, customer: str | None, account: str | None) -> Obj:
        """Test tokens (``pm_card_visa``) become a stored card, as they do at Stripe."""
        if token in self._objects:
            return self._get("payment_method", token, account, "payment_method")
        if not token.startswith("pm_card_"):
            raise not_found("PaymentMethod", token, "payment_method")
        return self._create("payment_method", account, new_id("pm"), customer=customer, metadata={})

    def _charge(self, intent: Obj, payment_method: str, account: str | None) -> Obj:
        charge_id, amount_cents, currency = new_id("ch"), intent["amount"], intent["currency"]
        fee_cents = stripe_fee_cents(amount_cents, currency)
        txn = self._post_balance(account, currency, amount_cents, "charge", charge_id, fee_cents)
        details = copy.deepcopy(SHAPES["charge"]["payment_method_details"])
        details["card"]["amount_authorized"] = amount_cents
        details["card"]["overcapture"]["maximum_amount_capturable"] = amount_cents
        outcome = {**SHAPES["charge"]["outcome"], "network_status": "approved_by_network"}
        outcome.update(seller_message="Payment complete.", type="authorized")
        copied = _pick(intent, "currency", "customer", "description", "metadata", "on_behalf_of")
        copied.update(_pick(intent, "receipt_email", "transfer_group"), payment_intent=intent["id"])
        charge = self._create("charge", account, charge_id, **copied, status="succeeded")
        charge.update(amount=amount_cents, amount_captured=amount_cents, captured=True, paid=True)
        charge.update(balance_transaction=txn["id"], calculated_statement_descriptor="STANDIN")
        charge.update(payment_method=payment_method, payment_method_details=details)
        charge.update(outcome=outcome, refunds=sublist(f"/v1/charges/{charge_id}/refunds"))
        return charge

    # -- refunds --------------------------------------------------------------------------

    @_locked
    def create_refund(self, params: Params, account: str | None) -> Obj:
        charge = self._refundable_charge(params, account)
        remaining = charge["amount"] - charge["amount_refunded"]
        amount_cents = params.amount(required=False) or remaining
        if remaining == 0:
            message = f"Charge {charge['id']} has already been refunded."
            raise StripeError(400, message, "charge_already_refunded")
        if amount_cents > remaining:
            message = f"Refund amount ({amount_cents}) exceeds the unrefunded {remaining}."
            raise StripeError(400, message, "amount_too_large", "amount")
        reason = params.text("reason", choices=("duplicate", "fraudulent", "requested_by_customer"))
        refund_id = new_id("re")
        txn = self._post_balance(account, charge["currency"], -amount_cents, "refund", refund_id)
        copied = _pick(charge, "currency", "customer", "payment_intent", "payment_method")
        refund = self._create("refund", account, refund_id, **copied, charge=charge["id"])
        refund.update(amount=amount_cents, balance_transaction=txn["id"], status="succeeded")
        refund.update(reason=reason, metadata=_metadata(params))
        charge["amount_refunded"] += amount_cents
        charge["refunded"] = charge["amount_refunded"] == charge["amount"]
        charge["refunds"]["data"].insert(0, refund)
        self._emit("refund.created", refund, account)
        self._emit("charge.refunded", charge, account)
        self._emit("refund.updated", refund, account)
        return refund

    def _refundable_charge(self, params: Params, account: str | None) -> Obj:
        intent_id = params.text("payment_intent")
        if intent_id and not params.has("charge"):
            intent = self._get("payment_intent", intent_id, account, "payment_intent")
            charge_id = intent["latest_charge"]
            if not charge_id:
                message = f"PaymentIntent {intent_id} has no successful charge to refund."
                raise StripeError(400, message, "charge_not_refundable", "payment_intent")
        else:
            charge_id = params.required_text("charge")
        charge = self._get("charge", charge_id, account, "charge")
        if any(
            obj["object"] == "dispute" and obj["charge"] == charge_id and obj["status"] != "won"
            for obj in self._objects.values()
        ):
            message = f"Charge {charge_id} has been charged back; it cannot be refunded."
            raise StripeError(400, message, "charge_disputed", "charge")
        return charge

    # -- transfers and payouts --------------------------------------------------------------

    @_locked
    def create_transfer(self, params: Params, account: str | None) -> Obj:
        amount_cents, currency = params.amount(), params.currency()
        destination = params.required_text("destination")
        connected = self._get("account", destination, None, "destination")
        if connected["capabilities"].get("transfers") != "active":
            message = "Your destination account needs to have the transfers capability enabled."
            raise StripeError(400, message, "insufficient_capabilities_for_transfer", "destination")
        source_transaction = params.text("source_transaction")
        if source_transaction:
            self._get("charge", source_transaction, account, "source_transaction")
        self._require_funds(account, currency, amount_cents)
        transfer_id, payment_id = new_id("tr"), new_id("py")
        txn = self._post_balance(account, currency, -amount_cents, "transfer", transfer_id)
        self._post_balance(destination, currency, amount_cents, "payment", payment_id)
        texts = _texts(params, "description", "transfer_group")
        transfer = self._create("transfer", account, transfer_id, **texts, currency=currency)
        transfer.update(amount=amount_cents, balance_transaction=txn["id"])
        transfer.update(destination=destination, destination_payment=payment_id)
        transfer.update(source_transaction=source_transaction, metadata=_metadata(params))
        transfer["reversals"] = sublist(f"/v1/transfers/{transfer_id}/reversals")
        self._emit("transfer.created", transfer, account)
        return transfer

    @_locked
    def create_transfer_reversal(
        self, params: Params, account: str | None, transfer_id: str
    ) -> Obj:
        transfer = self._get("transfer", transfer_id, account)
        remaining = transfer["amount"] - transfer["amount_reversed"]
        amount_cents = params.amount(required=False) or remaining
        if remaining == 0 or amount_cents > remaining:
            message = f"Reversal amount ({amount_cents}) exceeds what is left ({remaining})."
            raise StripeError(400, message, "amount_too_large", "amount")
        destination, currency = transfer["destination"], transfer["currency"]
        self._require_funds(destination, currency, amount_cents)
        reversal_id, payment_refund_id = new_id("trr"), new_id("pyr")
        txn = self._post_balance(account, currency, amount_cents, "transfer_refund", reversal_id)
        self._post_balance(
            destination, currency, -amount_cents, "payment_refund", payment_refund_id
        )
        reversal = self._create("transfer_reversal", account, reversal_id, transfer=transfer_id)
        reversal.update(amount=amount_cents, currency=currency, balance_transaction=txn["id"])
        reversal.update(destination_payment_refund=payment_refund_id, metadata=_metadata(params))
        transfer["amount_reversed"] += amount_cents
        transfer["reversed"] = transfer["amount_reversed"] == transfer["amount"]
        transfer["reversals"]["data"].insert(0, reversal)
        self._emit("transfer.reversed", transfer, account)
        return reversal

    @_locked
    def create_payout(self, params: Params, account: str | None) -> Obj:
        amount_cents, currency = params.amount(), params.currency()
        method = params.text("method", "standard", choices=("standard", "instant"))
        if account and not self._get("account", account, account)["payouts_enabled"]:
            message = "Payouts are not enabled for this account: onboarding is not complete."
            raise StripeError(400, message, "payouts_not_allowed")
        self._require_funds(account, currency, amount_cents)
        payout_id, now = new_id("po"), int(time.time())
        txn = self._post_balance(account, currency, -amount_cents, "payout", payout_id)
        texts = _texts(params, "description", "statement_descriptor")
        payout = self._create("payout", account, payout_id, **texts, status="pending")
        payout.update(amount=amount_cents, currency=currency, balance_transaction=txn["id"])
        payout.update(method=method, arrival_date=now if method == "instant" else now + 2 * 86400)
        payout.update(automatic=False, destination=new_id("ba"), metadata=_metadata(params))
        payout["trace_id"] = {"status": "pending", "value": None}
        payout["reconciliation_status"] = "not_applicable"
        self._emit("payout.created", payout, account)
        created = copy.deepcopy(payout)
        # Stripe hands the payout to the bank moments later; the next read shows that.
        payout["status"] = "in_transit"
        self._emit("payout.updated", payout, account)
        if method == "instant" and self.instant_payouts_paid_after is not None:
            timer = threading.Timer(self.instant_payouts_paid_after, self._pay_out, [payout_id])
            timer.daemon = True
            self._timers.append(timer)
            timer.start()
        return created

    @_locked
    def _pay_out(self, payout_id: str) -> None:
        """An instant payout reaching the bank by itself (unless it failed meanwhile)."""
        if self._objects.get(payout_id, {}).get("status") == "in_transit":
            self.settle_payout(Params({}), None, payout_id)

    @_locked
    def settle_payout(self, params: Params, account: str | None, payout_id: str) -> Obj:
        payout = self._in_transit_payout(payout_id)
        payout.update(status="paid", trace_id={"status": "supported", "value": new_id("trace")})
        self._emit("payout.paid", payout, self._owners[payout_id])
        return payout

    @_locked
    def fail_payout(self, params: Params, account: str | None, payout_id: str) -> Obj:
        # Stripe can fail a payout after `payout.paid` too (the bank returns it days later).
        payout = self._get_any("payout", payout_id)
        if payout["status"] not in ("pending", "in_transit", "paid"):
            message = f"Payout {payout_id} is already {payout['status']}."
            raise StripeError(400, message, "payout_unexpected_state")
        code = params.text("failure_code") or "account_closed"
        owner, currency = self._owners[payout_id], payout["currency"]
        txn = self._post_balance(owner, currency, payout["amount"], "payout_failure", payout_id)
        payout.update(status="failed", failure_code=code, failure_balance_transaction=txn["id"])
        payout["failure_message"] = PAYOUT_FAILURES.get(code, "The payout failed.")
        self._emit("payout.failed", payout, owner)
        return payout

    def _in_transit_payout(self, payout_id: str) -> Obj:
        payout = self._get_any("payout", payout_id)
        if payout["status"] not in ("pending", "in_transit"):
            message = f"Payout {payout_id} is already {payout['status']}."
            raise StripeError(400, message, "payout_unexpected_state")
        return payout

    # -- disputes -------------------------------------------------------------------------

    @_locked
    def create_dispute(self, params: Params, account: str | None, charge_id: str) -> Obj:
        charge = self._get_any("charge", charge_id)
        amount_cents = params.amount(required=False) or charge["amount"]
        if charge["disputed"] or amount_cents > charge["amount"]:
            message = f"Charge {charge_id} is already disputed or the amount exceeds it."
            raise StripeError(400, message, "charge_already_disputed", "charge")
        owner, dispute_id, currency = self._owners[charge_id], new_id("dp"), charge["currency"]
        fee = {"fee_cents": DISPUTE_FEE_CENTS, "fee_description": "Dispute fee"}
        txn = self._post_balance(
            owner, currency, -amount_cents, "adjustment", dispute_id, **fee, category="dispute"
        )
        details = copy.deepcopy(SHAPES["dispute"]["payment_method_details"])
        details["card"]["case_type"] = "chargeback"
        evidence_details = copy.deepcopy(SHAPES["dispute"]["evidence_details"])
        evidence_details["due_by"] = int(time.time()) + 7 * 86400
        dispute = self._create("dispute", owner, dispute_id, charge=charge_id, currency=currency)
        dispute.update(amount=amount_cents, balance_transactions=[txn], status="needs_response")
        dispute.update(evidence_details=evidence_details, payment_method_details=details)
        dispute.update(payment_intent=charge["payment_intent"], is_charge_refundable=False)
        dispute.update(reason=params.text("reason", "general"), enhanced_eligibility_types=[])
        charge["disputed"] = True
        self._emit("charge.dispute.created", dispute, owner)
        self._emit("charge.dispute.funds_withdrawn", dispute, owner)
        return dispute

    @_locked
    def update_dispute(self, params: Params, account: str | None, dispute_id: str) -> Obj:
        dispute = self._open_dispute(dispute_id)
        dispute["status"] = params.text("status", "under_review", choices=OPEN_DISPUTE_STATUSES)
        if dispute["status"] == "under_review":
            evidence = dispute["evidence_details"]
            evidence.update(has_evidence=True, submission_count=evidence["submission_count"] + 1)
        self._emit("charge.dispute.updated", dispute, self._owners[dispute_id])
        return dispute

    @_locked
    def close_dispute(self, params: Params, account: str | None, dispute_id: str) -> Obj:
        dispute = self._open_dispute(dispute_id)
        status = params.required_text("status", choices=("won", "lost"))
        owner = self._owners[dispute_id]
        if status == "won":
            returned = (owner, dispute["currency"], dispute["amount"], "adjustment", dispute_id)
            txn = self._post_balance(*returned, category="dispute_reversal")
            dispute["balance_transactions"].append(txn)
            self._emit("charge.dispute.funds_reinstated", dispute, owner)
        dispute["status"] = status
        self._emit("charge.dispute.closed", dispute, owner)
        return dispute

    def _open_dispute(self, dispute_id: str) -> Obj:
        dispute = self._get_any("dispute", dispute_id)
        if dispute["status"] not in OPEN_DISPUTE_STATUSES:
            message = f"Dispute {dispute_id} is already closed ({dispute['status']})."
            raise StripeError(400, message, "dispute_already_closed")
        return dispute

    # -- webhook control ------------------------------------------------------------------

    @_locked
    def configure_webhook(self, params: Params, account: str | None) -> Obj:
        self.webhooks.configure(params.text("url"), params.text("secret"))
        return {"url": self.webhooks.url, "secret_set": bool(self.webhooks.secret)}

    @_locked
    def hold_events(self, params: Params, account: str | None) -> Obj:
        holding = params.flag("hold", True)
        self.webhooks.hold(holding)
        return {"hold": holding}

    @_locked
    def release_events(self, params: Params, account: str | None) -> Obj:
        order = params.text("order", "created", choices=RELEASE_ORDERS) or "created"
        seed = params.integer("seed", 0) if params.has("seed") else None
        duplicates = max(params.integer("duplicates", 1), 1)
        return {"released": self.webhooks.release(order, seed, duplicates)}

    @_locked
    def redeliver_event(self, params: Params, account: str | None, event_id: str) -> Obj:
        self.webhooks.redeliver(self._get_any("event", event_id))
        return {"redelivered": event_id}

    @_locked
    def delivery_log(self, params: Params, account: str | None) -> Obj:
        events = [obj for obj in self._objects.values() if obj["object"] == "event"]
        summaries = [
            {
                **_pick(event, "id", "type", "created"),
                "account": event.get("account"),
                "object_id": event["data"]["object"].get("id"),
                "attempts": self.webhooks.attempts_for(event["id"]),
            }
            for event in events
        ]
        return {"events": summaries}

    @_locked
    def reset(self, params: Params, account: str | None) -> Obj:
        self.webhooks.clear()
        self._wipe()
        return {"reset": True}

    # -- persistence: `make demo` keeps Stripe's side across runs, as the books are kept ------

    @_locked
    def snapshot(self) -> Obj:
        """Everything a restarted stand-in needs to answer as before (queued webhook
        deliveries excepted: they were sent, or Stripe would have retried them)."""
        return {
            "platform_id": self.platform_id,
            "objects": self._objects,
            "owners": self._owners,
            "balances": [
                [owner, currency, cents] for (owner, currency), cents in self._balances.items()
            ],
            "idempotent": [
                [account, key, fingerprint, status, body]
                for (account, key), (fingerprint, status, body) in self._idempotent.items()
            ],
        }

    @_locked
    def restore(self, data: Obj) -> None:
        self.platform_id = data["platform_id"]
        self._objects = data["objects"]
        self._owners = data["owners"]
        self._balances = {(owner, currency): cents for owner, currency, cents in data["balances"]}
        self._idempotent = {
            (account, key): (fingerprint, status, body)
            for account, key, fingerprint, status, body in data["idempotent"]
        }

    def save(self, path: Path) -> None:
        """Write the snapshot atomically (a crash mid-write leaves the previous one)."""
        partial = path.with_suffix(path.suffix + ".partial")
        partial.write_text(json.dumps(self.snapshot()))
        partial.replace(path)

    def load(self, path: Path) -> bool:
        """Restore from `path` if it exists; False when there was nothing to restore."""
        if not path.exists():
            return False
        self.restore(json.loads(path.read_text()))
        return True

    def close(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self.webhooks.close()
