"""The books in the admin: read-only everywhere; corrections go through "Post adjustment"
(a new balanced transaction) and "Reverse this transaction" (its mirror image, in full or
in part). Both take amounts as people type them, in major units, read by the pages' one
parser (treasury.money_format), bounded, and both are audited with the reason given."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import defaultdict
from fractions import Fraction
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core import signing
from django.db import transaction
from django.db.models import Q
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    JsonResponse,
)
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from ledger.chart import PLATFORM_ACCOUNTS, parse_code, platform_code
from ledger.models import LedgerAccount, LedgerEntry, LedgerTransaction, Side
from ledger.services import EntryLine, post_adjustment, reverse_transaction
from treasury.errors import TreasuryError
from treasury.money_format import (
    DEFAULT_LOCALE,
    MAX_AMOUNT_MINOR,
    BadAmount,
    example_amount,
    format_money,
    parse_amount,
    request_locale,
)
from treasury.rls import system_context
from treasury.services import record_audit

FORM_REFUSED = 400
ACCOUNT_SUGGESTIONS = 30
CONFIRMATION_SALT = "ledger.adjustment-confirmation"


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(LedgerAccount)
class LedgerAccountAdmin(ReadOnlyAdmin):
    list_display = ["code", "shard", "kind", "currency", "balance", "owner", "created_at"]
    list_filter = ["kind", "currency"]
    search_fields = ["code", "owner__email"]
    list_select_related = ["owner"]

    @admin.display(description="Balance", ordering="balance_cents")
    def balance(self, account: LedgerAccount) -> str:
        return format_money(account.balance_cents, account.currency)


class EntryInline(admin.TabularInline):
    model = LedgerEntry
    fields = ["account", "type", "amount", "user"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="Amount")
    def amount(self, entry: LedgerEntry) -> str:
        return format_money(entry.amount_cents, entry.currency)


# --- Post adjustment ---


def _typed(form: forms.Form, name: str) -> str:
    return str(form.data.get(form.add_prefix(name), "") or "").strip()


class AdjustmentLineForm(forms.Form):
    """One line; a row left blank (no account, no amount) is no line at all."""

    account = forms.CharField(
        max_length=200,
        required=False,
        widget=forms.TextInput(
            attrs={
                "list": "ledger-accounts",
                "autocomplete": "off",
                "spellcheck": "false",
                "class": "account-code",
                "placeholder": "Search by code or e-mail",
            }
        ),
    )
    type = forms.ChoiceField(choices=[("", "—"), *Side.choices], required=False)
    amount = forms.CharField(
        max_length=32,
        required=False,
        widget=forms.TextInput(attrs={"inputmode": "decimal", "class": "amount"}),
    )
    currency = forms.CharField(
        max_length=3,
        required=False,
        help_text="Taken from the account when empty.",
        widget=forms.TextInput(attrs={"size": 4, "class": "currency"}),
    )

    def __init__(self, *args: Any, locale: str = DEFAULT_LOCALE, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.locale = locale
        self.fields["amount"].widget.attrs["placeholder"] = example_amount(locale)

    def has_changed(self) -> bool:
        # The type select always sends a value: a row is filled in when it names an account
        # or an amount, which is what makes four blank extra rows no rows at all.
        return bool(_typed(self, "account") or _typed(self, "amount"))

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        code = (data.get("account") or "").strip()
        parsed = parse_code(code) if code else None
        if not code:
            self.add_error("account", "pick an account")
        elif parsed is None:
            self.add_error("account", f"no account {code!r}: pick one from the list")
        if not data.get("type"):
            self.add_error("type", "debit or credit")
        currency = (data.get("currency") or "").strip().upper()
        if parsed is not None:
            if currency and currency != parsed.currency:
                self.add_error("currency", f"{code} holds {parsed.currency}, not {currency}")
                return data
            currency = parsed.currency
        data["currency"] = currency
        text = (data.get("amount") or "").strip()
        if not text:
            self.add_error("amount", "enter an amount")
        elif currency:
            try:
                data["amount_cents"] = parse_amount(
                    text, currency, locale=self.locale, max_cents=MAX_AMOUNT_MINOR
                )
            except BadAmount as exc:
                self.add_error("amount", str(exc))
        return data

    def entry_line(self) -> EntryLine:
        data = self.cleaned_data
        return EntryLine(
            data["account"].strip(), data["type"], data["amount_cents"], data["currency"]
        )


class BaseAdjustmentLines(forms.BaseFormSet):
    def filled(self) -> list[AdjustmentLineForm]:
        return [f for f in self.forms if f.has_changed()]

    def clean(self) -> None:
        if any(self.errors):
            return
        if len(self.filled()) < 2:
            raise forms.ValidationError("An adjustment needs at least two lines.")
        for currency, (debits, credits) in self.totals().items():
            if debits != credits:
                raise forms.ValidationError(
                    f"Not balanced in {currency}: debits {format_money(debits, currency)},"
                    f" credits {format_money(credits, currency)}"
                    f" (a difference of {format_money(abs(debits - credits), currency)})."
                )

    def entry_lines(self) -> list[EntryLine]:
        return [f.entry_line() for f in self.filled()]

    def totals(self) -> dict[str, tuple[int, int]]:
        """Per currency: (debits, credits) in minor units, of the lines that are valid."""
        sums: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for form in self.filled():
            data = getattr(form, "cleaned_data", {})
            if "amount_cents" in data and data.get("type") in Side.values:
                sums[data["currency"]][0 if data["type"] == Side.DEBIT else 1] += data[
                    "amount_cents"
                ]
        return {c: (d, k) for c, (d, k) in sorted(sums.items())}


AdjustmentLines = forms.formset_factory(
    AdjustmentLineForm, formset=BaseAdjustmentLines, extra=6, min_num=0, max_num=20
)


class AdjustmentForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}))
    reference_id = forms.CharField(max_length=255, required=False)
    # One per rendered form: a double click posts one adjustment.
    idempotency_key = forms.CharField(max_length=255, widget=forms.HiddenInput)
    confirmation = forms.CharField(required=False, widget=forms.HiddenInput)


def _totals_rows(totals: dict[str, tuple[int, int]]) -> list[dict[str, Any]]:
    return [
        {
            "currency": currency,
            "debits": format_money(debits, currency),
            "credits": format_money(credits, currency),
            "difference": format_money(debits - credits, currency),
            "balanced": debits == credits,
        }
        for currency, (debits, credits) in totals.items()
    ]


def _adjustment_digest(form: AdjustmentForm, lines: BaseAdjustmentLines) -> str:
    """What the confirmation is of: a change to any line, the reason or the key needs a
    new one."""
    body = {
        "key": form.cleaned_data["idempotency_key"],
        "reason": form.cleaned_data["reason"].strip(),
        "reference_id": form.cleaned_data["reference_id"],
        "lines": [line.as_json() for line in lines.entry_lines()],
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


# --- Reverse this transaction ---


class ReverseForm(forms.Form):
    how = forms.ChoiceField(
        choices=[("full", "Everything not reversed yet"), ("partial", "Part of it")],
        initial="full",
        widget=forms.RadioSelect,
        label="Reverse",
    )
    amount = forms.CharField(
        max_length=32,
        required=False,
        help_text="For a part: how much of the transaction's debits to reverse.",
        widget=forms.TextInput(attrs={"inputmode": "decimal"}),
    )
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}))
    idempotency_key = forms.CharField(max_length=255, widget=forms.HiddenInput)

    def __init__(
        self,
        *args: Any,
        currency: str | None,
        left_cents: int | None,
        locale: str = DEFAULT_LOCALE,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.currency, self.left_cents, self.locale = currency, left_cents, locale
        if currency is None:  # several currencies: a part of what is not one amount
            self.fields["how"].choices = self.fields["how"].choices[:1]
            del self.fields["amount"]
        else:
            self.fields["amount"].label = f"Amount ({currency})"
            self.fields["amount"].widget.attrs["placeholder"] = example_amount(locale)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        data["amount_cents"] = None
        if data.get("how") != "partial":
            return data
        text = (data.get("amount") or "").strip()
        if not text:
            self.add_error("amount", "enter how much to reverse")
            return data
        assert self.currency is not None and self.left_cents is not None
        try:
            cents = parse_amount(text, self.currency, locale=self.locale)
        except BadAmount as exc:
            self.add_error("amount", str(exc))
            return data
        if cents > self.left_cents:
            self.add_error(
                "amount",
                f"at most {format_money(self.left_cents, self.currency)} is left to reverse",
            )
        data["amount_cents"] = cents
        return data


def _reversed_so_far(original: LedgerTransaction) -> Fraction:
    return sum(
        (Fraction(r.metadata.get("reversed_fraction", "1")) for r in original.reversals.all()),
        Fraction(0),
    )


def _debit_totals(original: LedgerTransaction) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for entry in original.entries.all():
        if entry.type == Side.DEBIT:
            totals[entry.currency] += entry.amount_cents
    return dict(sorted(totals.items()))


@admin.register(LedgerTransaction)
class LedgerTransactionAdmin(ReadOnlyAdmin):
    list_display = ["id", "idempotency_key", "event_source", "reference_id", "effective_at"]
    list_filter = ["event_source"]
    search_fields = ["idempotency_key", "reference_id"]
    date_hierarchy = "effective_at"
    inlines = [EntryInline]
    readonly_fields = ["reverses", "reversed_by"]
    change_list_template = "admin/ledger/ledgertransaction/change_list.html"
    change_form_template = "admin/ledger/ledgertransaction/change_form.html"

    @admin.display(description="Reversed by")
    def reversed_by(self, txn: LedgerTransaction) -> str:
        reversals = [
            f"#{r.pk} ({r.metadata.get('reversed_fraction', '1')})" for r in txn.reversals.all()
        ]
        return ", ".join(reversals) or "—"

    def get_urls(self) -> list[URLPattern]:
        def view(function: Any) -> Any:
            return self.admin_site.admin_view(function)

        return [
            path("adjust/", view(self.adjustment_view), name="ledger_adjust"),
            path("adjust/accounts/", view(self.accounts_view), name="ledger_adjust_accounts"),
            path("adjust/totals/", view(self.totals_view), name="ledger_adjust_totals"),
            path("<int:transaction_id>/reverse/", view(self.reverse_view), name="ledger_reverse"),
            *super().get_urls(),
        ]

    def _refuse_non_admin(self, request: HttpRequest, what: str) -> HttpResponse | None:
        if getattr(request.user, "is_admin", False):
            return None
        messages.error(request, f"Only admins may {what}.")
        return HttpResponseRedirect(reverse("admin:ledger_ledgertransaction_changelist"))

    # --- the account search behind the adjustment form's account fields ---

    def accounts_view(self, request: HttpRequest) -> HttpResponse:
        """Account codes matching `q` (in the code, or the owner's e-mail or name), for the
        adjustment form's searchable list: at most ACCOUNT_SUGGESTIONS, platform first."""
        if not getattr(request.user, "is_admin", False):
            return JsonResponse({"detail": "only admins"}, status=403)
        return JsonResponse({"accounts": _account_choices(request.GET.get("q", ""))})

    def totals_view(self, request: HttpRequest) -> HttpResponse:
        """The form's totals per currency in major units, as the server reads the lines (the
        page's live totals: the browser never parses an amount itself)."""
        if not getattr(request.user, "is_admin", False):
            return JsonResponse({"detail": "only admins"}, status=403)
        lines = AdjustmentLines(
            request.POST, prefix="lines", form_kwargs={"locale": request_locale(request)}
        )
        lines.is_valid()
        return JsonResponse({"totals": _totals_rows(lines.totals())})

    # --- Post adjustment ---

    def adjustment_view(self, request: HttpRequest) -> HttpResponse:
        if refused := self._refuse_non_admin(request, "post adjustments"):
            return refused
        locale = request_locale(request)
        data = request.POST if request.method == "POST" else None
        form = AdjustmentForm(data, initial={"idempotency_key": f"adjust:{uuid.uuid4()}"})
        lines = AdjustmentLines(data, prefix="lines", form_kwargs={"locale": locale})
        confirm: dict[str, Any] | None = None
        status = 200
        if data is not None:
            status = FORM_REFUSED
            if form.is_valid() and lines.is_valid():
                status = 200
                totals = lines.totals()
                threshold = settings.LEDGER_ADJUSTMENT_CONFIRM_ABOVE_MINOR
                large = {c: d for c, (d, _) in totals.items() if d > threshold}
                digest = _adjustment_digest(form, lines)
                if large and not _confirmed(form.cleaned_data["confirmation"], digest):
                    confirm = {
                        "token": signing.dumps(digest, salt=CONFIRMATION_SALT),
                        "amounts": [format_money(d, c) for c, d in large.items()],
                        "threshold": ", ".join(format_money(threshold, c) for c in large),
                    }
                else:
                    posted = self._post(request, form, lines)
                    if posted is not None:
                        return posted
                    status = FORM_REFUSED
        context = {
            **self.admin_site.each_context(request),
            "title": "Post a balanced adjustment",
            "form": form,
            "lines": lines,
            "totals": _totals_rows(lines.totals()) if data is not None else [],
            "accounts": _account_choices(""),
            "confirm": confirm,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/ledger/adjustment.html", context, status=status)

    def _post(
        self, request: HttpRequest, form: AdjustmentForm, lines: BaseAdjustmentLines
    ) -> HttpResponse | None:
        try:
            posted = post_adjustment(
                actor=request.user,  # type: ignore[arg-type]
                idempotency_key=form.cleaned_data["idempotency_key"],
                reason=form.cleaned_data["reason"],
                reference_id=form.cleaned_data["reference_id"] or None,
                entries=lines.entry_lines(),
            )
        except TreasuryError as exc:
            _place_ledger_error(form, lines, exc)
            return None
        messages.success(request, f"Adjustment {posted.idempotency_key} posted.")
        return HttpResponseRedirect(
            reverse("admin:ledger_ledgertransaction_change", args=[posted.pk])
        )

    # --- Reverse this transaction ---

    def reverse_view(self, request: HttpRequest, transaction_id: int) -> HttpResponse:
        if refused := self._refuse_non_admin(request, "reverse transactions"):
            return refused
        original = LedgerTransaction.objects.filter(pk=transaction_id).first()
        if original is None:
            raise Http404(f"transaction {transaction_id} not found")
        debits = _debit_totals(original)
        done = _reversed_so_far(original)
        currency = next(iter(debits)) if len(debits) == 1 else None
        left_cents = int(debits[currency] * (1 - done)) if currency else None
        form = ReverseForm(
            request.POST if request.method == "POST" else None,
            initial={"idempotency_key": f"reverse:{original.pk}:{uuid.uuid4()}"},
            currency=currency,
            left_cents=left_cents,
            locale=request_locale(request),
        )
        status = 200
        if request.method == "POST":
            status = FORM_REFUSED
            if done >= 1:
                form.is_valid()
                form.add_error(None, "This transaction is already reversed in full.")
            elif form.is_valid():
                reversal = self._reverse(request, original, form, debits, done)
                if reversal is not None:
                    messages.success(
                        request,
                        f"Transaction #{original.pk} reversed"
                        f" ({reversal.metadata.get('reversed_fraction')} of it) by #{reversal.pk}.",
                    )
                    return HttpResponseRedirect(
                        reverse("admin:ledger_ledgertransaction_change", args=[reversal.pk])
                    )
        context = {
            **self.admin_site.each_context(request),
            "title": f"Reverse transaction #{original.pk}",
            "original": original,
            "entries": [
                {"entry": e, "amount": format_money(e.amount_cents, e.currency)}
                for e in original.entries.select_related("account").order_by("id")
            ],
            "debits": [format_money(cents, c) for c, cents in debits.items()],
            "reversed_fraction": done,
            "left": format_money(left_cents, currency) if currency else None,
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(
            request, "admin/ledger/ledgertransaction/reverse.html", context, status=status
        )

    def _reverse(
        self,
        request: HttpRequest,
        original: LedgerTransaction,
        form: ReverseForm,
        debits: dict[str, int],
        done: Fraction,
    ) -> LedgerTransaction | None:
        data = form.cleaned_data
        ratio = None  # what is left
        if data["amount_cents"] is not None:
            ratio = Fraction(data["amount_cents"], next(iter(debits.values())))
        reason = data["reason"].strip()
        try:
            with transaction.atomic():
                reversal = reverse_transaction(
                    transaction=original,
                    idempotency_key=data["idempotency_key"],
                    ratio=ratio,
                    metadata={"reason": reason},
                    created_by=request.user,  # type: ignore[arg-type]
                )
                if not getattr(reversal, "was_replayed", False):
                    with system_context():
                        record_audit(
                            actor=request.user,  # type: ignore[arg-type]
                            action="ledger.reversal",
                            target=reversal,
                            before={"reversed_fraction": str(done)},
                            after={
                                "reversed_fraction": str(_reversed_so_far(original)),
                                "entries": [
                                    {
                                        "account": e.account.code,
                                        "side": e.type,
                                        "amount_cents": e.amount_cents,
                                        "currency": e.currency,
                                    }
                                    for e in reversal.entries.select_related("account")
                                ],
                            },
                            details={
                                "reverses": original.pk,
                                "reason": reason,
                                "ratio": str(ratio) if ratio is not None else "rest",
                            },
                        )
        except TreasuryError as exc:
            form.add_error("amount" if "amount" in form.fields else None, exc.message)
            return None
        return reversal


def _confirmed(token: str, digest: str) -> bool:
    try:
        return signing.loads(token, salt=CONFIRMATION_SALT, max_age=3600) == digest
    except signing.BadSignature:
        return False


def _place_ledger_error(
    form: AdjustmentForm, lines: BaseAdjustmentLines, exc: TreasuryError
) -> None:
    """The ledger names fields `entries.<i>.<field>` (i among the filled lines): the message
    goes under that line's field, else on top of the form."""
    filled = lines.filled()
    for name in exc.fields:
        parts = name.split(".")
        if len(parts) == 3 and parts[0] == "entries" and parts[1].isdigit():
            index = int(parts[1])
            field = {"amount_cents": "amount"}.get(parts[2], parts[2])
            if index < len(filled) and field in filled[index].fields:
                filled[index].add_error(field, exc.message)
                return
        if name in form.fields:
            form.add_error(name, exc.message)
            return
    form.add_error(None, exc.message)


def _account_choices(query: str) -> list[dict[str, str]]:
    """Platform accounts (of the currencies in use, and USD/EUR) and users' accounts whose
    code, owner e-mail or owner name contains `query`."""
    query = (query or "").strip()[:100]
    currencies = sorted(
        {
            "USD",
            "EUR",
            *LedgerAccount.objects.order_by().values_list("currency", flat=True).distinct(),
        }
    )
    platform = [
        {"code": platform_code(name, c), "label": f"Platform {name.replace('_', ' ')} ({c})"}
        for c in currencies
        for name in PLATFORM_ACCOUNTS
    ]
    if query:
        platform = [a for a in platform if query.lower() in f"{a['code']} {a['label']}".lower()]
    users = (
        LedgerAccount.objects.filter(owner__isnull=False, shard=0)
        .select_related("owner")
        .order_by("code")
    )
    if query:
        users = users.filter(
            Q(code__icontains=query)
            | Q(owner__email__icontains=query)
            | Q(owner__display_name__icontains=query)
        )
    found = [
        {
            "code": a.code,
            "label": f"{a.owner.display_name or a.owner.email} <{a.owner.email}>"
            f" {a.code.split(':')[2]} ({a.currency})",
        }
        for a in users[:ACCOUNT_SUGGESTIONS]
    ]
    return platform + found


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = ["id", "transaction", "account", "type", "amount", "user", "created_at"]
    list_filter = ["type", "currency", "event_source"]
    search_fields = ["reference_id", "account__code", "transaction__idempotency_key"]
    list_select_related = ["transaction", "account", "user"]
    date_hierarchy = "created_at"

    @admin.display(description="Amount", ordering="amount_cents")
    def amount(self, entry: LedgerEntry) -> str:
        return format_money(entry.amount_cents, entry.currency)
