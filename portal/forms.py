"""The pages' forms. They parse what a person types (amounts in major units, shares in
percent) into the services' terms (minor units, basis points); the services decide."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from django import forms
from django.conf import settings
from django.utils import timezone

from ledger.money import normalize_currency
from payouts.models import PayoutMethod
from portal.selectors import CHART_DAYS, ENTRY_KINDS
from reporting.models import ReportFormat
from reporting.services import EARLIEST_TAX_YEAR
from splits.terms import BPS_WHOLE, MAX_RECIPIENTS
from treasury.errors import TreasuryError
from treasury.money_format import (
    DEFAULT_LOCALE,
    BadAmount,
    example_amount,
    format_bps,
    parse_amount,
    parse_share_bps,
)


def add_service_error(
    form: forms.BaseForm, error: TreasuryError, field_map: dict[str, str]
) -> None:
    """A service's refusal on the form: its message goes under the first field it names
    that the form shows (`field_map`: the service's field name -> the form's), or on top of
    the form when it names none."""
    for name in error.fields:
        field = field_map.get(name)
        if field is not None and field in form.fields:
            form.add_error(field, error.message)
            return
    form.add_error(None, error.message)


# --- ledger entries ---


class EntryFilterForm(forms.Form):
    """GET filters of the entries list; every field optional."""

    date_from = forms.DateField(
        required=False, label="From", widget=forms.DateInput(attrs={"type": "date"})
    )
    date_to = forms.DateField(
        required=False, label="To", widget=forms.DateInput(attrs={"type": "date"})
    )
    currency = forms.ChoiceField(required=False)
    kind = forms.ChoiceField(required=False, choices=[("", "All kinds"), *ENTRY_KINDS.items()])

    def __init__(self, *args: Any, currencies: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["currency"].choices = [("", "All currencies")] + [(c, c) for c in currencies]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("date_from") and data.get("date_to") and data["date_to"] < data["date_from"]:
            self.add_error("date_to", "must not be before the start date")
        return data


class ChartForm(forms.Form):
    currency = forms.ChoiceField(required=False)
    days = forms.TypedChoiceField(
        required=False, coerce=int, empty_value=CHART_DAYS[0],
        choices=[(d, f"Last {d} days") for d in CHART_DAYS],
    )  # fmt: skip

    def __init__(self, *args: Any, currencies: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["currency"].choices = [(c, c) for c in currencies]


# --- payouts ---


class PayoutRequestForm(forms.Form):
    """An amount in the currency's major unit ("120.50", or "120,50" where a comma is the
    decimal mark), or everything available. Read in the reader's locale
    (treasury.money_format): an amount that reads two ways is refused, never guessed."""

    currency = forms.ChoiceField()
    amount = forms.CharField(
        required=False,
        max_length=32,
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}),
    )
    everything = forms.BooleanField(required=False, label="Everything available")
    method = forms.ChoiceField(
        choices=PayoutMethod.choices,
        initial=PayoutMethod.STANDARD,
        widget=forms.RadioSelect,
        help_text="Instant payouts arrive in minutes for a fee.",
    )
    # One per rendered form: a double click or a resent POST is the same request, and the
    # payouts service returns the first payout instead of paying twice.
    idempotency_key = forms.CharField(widget=forms.HiddenInput, max_length=100)

    def __init__(
        self, *args: Any, currencies: list[str], locale: str = DEFAULT_LOCALE, **kwargs: Any
    ) -> None:
        kwargs.setdefault("initial", {}).setdefault("idempotency_key", f"page:{uuid.uuid4()}")
        super().__init__(*args, **kwargs)
        self.locale = locale
        self.fields["currency"].choices = [(c, c) for c in currencies]
        self.fields["amount"].help_text = (
            f"In the currency's units, e.g. {example_amount(locale)}."
            " Leave empty with “everything available”."
        )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        currency, text = data.get("currency"), (data.get("amount") or "").strip()
        if data.get("everything"):
            if text:
                self.add_error("amount", "leave the amount empty to pay out everything")
            data["amount_cents"] = None
        elif not text:
            self.add_error("amount", "enter an amount, or tick “everything available”")
        elif currency:
            try:
                data["amount_cents"] = parse_amount(text, currency, locale=self.locale)
            except BadAmount as exc:
                self.add_error("amount", str(exc))
        return data


# --- split rules ---


class SplitRuleForm(forms.Form):
    name = forms.CharField(max_length=200)
    is_default = forms.BooleanField(
        required=False,
        label="Default rule",
        help_text="Sales that name no rule are split by your default rule.",
    )


class RecipientForm(forms.Form):
    recipient_id = forms.UUIDField(
        label="Recipient (user id)",
        widget=forms.TextInput(
            attrs={"autocomplete": "off", "spellcheck": "false", "class": "recipient-id"}
        ),
    )
    share = forms.CharField(
        label="Share (%)",
        max_length=12,
        widget=forms.TextInput(attrs={"inputmode": "decimal", "class": "share"}),
    )

    def __init__(self, *args: Any, locale: str = DEFAULT_LOCALE, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.locale = locale

    def clean_share(self) -> int:
        try:
            return parse_share_bps(self.cleaned_data["share"], locale=self.locale)
        except BadAmount as exc:
            raise forms.ValidationError(str(exc)) from exc


class BaseRecipientFormSet(forms.BaseFormSet):
    def clean(self) -> None:
        if any(self.errors):
            return
        shares = [f.cleaned_data["share"] for f in self.forms if f.cleaned_data]
        seen: set[Any] = set()
        for form in self.forms:
            recipient = form.cleaned_data.get("recipient_id")
            if recipient in seen:
                form.add_error("recipient_id", "appears more than once")
            seen.add(recipient)
        total = sum(shares)
        if total != BPS_WHOLE:
            raise forms.ValidationError(
                f"Shares add up to {format_bps(total)}%: they must add up to exactly 100%."
            )

    def recipients(self) -> list[dict[str, Any]]:
        return [
            {
                "recipient_id": str(f.cleaned_data["recipient_id"]),
                "share_bps": f.cleaned_data["share"],
            }
            for f in self.forms
            if f.cleaned_data
        ]


RecipientFormSet = forms.formset_factory(
    RecipientForm,
    formset=BaseRecipientFormSet,
    extra=0,
    min_num=1,
    validate_min=True,
    max_num=MAX_RECIPIENTS,
    validate_max=True,
)


def recipient_initial(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"recipient_id": r["recipient_id"], "share": format_bps(int(r["share_bps"]))} for r in rules
    ]


# --- reports ---


def _tax_years() -> list[tuple[int, str]]:
    this_year = timezone.now().year
    return [(y, str(y)) for y in range(this_year, max(EARLIEST_TAX_YEAR, this_year - 6) - 1, -1)]


class OptionalCurrencyField(forms.CharField):
    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("max_length", 3)
        kwargs.setdefault("help_text", "ISO code such as USD; empty for every currency.")
        super().__init__(**kwargs)

    def clean(self, value: Any) -> str | None:
        value = (super().clean(value) or "").strip()
        if not value:
            return None
        try:
            return normalize_currency(value)
        except TreasuryError as exc:
            raise forms.ValidationError(exc.message) from exc


class Report1099Form(forms.Form):
    tax_year = forms.TypedChoiceField(coerce=int, choices=_tax_years)
    currency = OptionalCurrencyField()
    format = forms.ChoiceField(choices=ReportFormat.choices, initial=ReportFormat.CSV)


class VatInvoiceReportForm(forms.Form):
    period_start = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}))
    period_end = forms.DateField(
        widget=forms.DateInput(attrs={"type": "date"}), help_text="Included."
    )
    country = forms.ChoiceField(required=False)
    currency = OptionalCurrencyField()
    format = forms.ChoiceField(choices=ReportFormat.choices, initial=ReportFormat.CSV)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        default = settings.REPORTING_VAT_DEFAULT_COUNTRY.upper()
        countries = sorted(code.upper() for code in settings.REPORTING_VAT_RATES_BPS)
        self.fields["country"].choices = [("", f"Default ({default})")] + [
            (c, c) for c in countries
        ]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        start, end = data.get("period_start"), data.get("period_end")
        if isinstance(start, date) and isinstance(end, date) and end < start:
            self.add_error("period_end", "must not be before the start")
        return data
