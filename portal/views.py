"""The hosts' and artists' pages: Django templates over session login.

Each request runs in the row-level-security context of the signed-in user
(treasury.middleware), so every query sees only their rows: another user's payout, split
rule or report is a 404 here as in the API. Views parse a form, call one service or
selector, and render. A refused form is answered 400, which also makes the middleware roll
the request's transaction back: a bad amount or share changes nothing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.mixins import LoginRequiredMixin
from django.core import signing
from django.core.paginator import Page, Paginator
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse, reverse_lazy
from django.views import View

from ledger import selectors as ledger_selectors
from ledger.money import minor_units
from payouts import selectors as payout_selectors
from payouts import services as payout_services
from payouts.models import PayoutMethod
from portal import selectors
from portal.forms import (
    ChartForm,
    EntryFilterForm,
    PayoutRequestForm,
    RecipientFormSet,
    Report1099Form,
    SplitRuleForm,
    VatInvoiceReportForm,
    add_service_error,
    recipient_initial,
)
from reporting import selectors as report_selectors
from reporting import services as report_services
from reporting.models import Report, ReportStatus, ReportType
from reporting.selectors import period_bounds
from splits import selectors as split_selectors
from splits import services as split_services
from splits.models import SplitRule
from treasury.errors import NotFound, TreasuryError
from treasury.models import RECIPIENT_ROLES, User
from treasury.money_format import format_input, format_money, request_locale
from treasury.stripe import selectors as stripe_selectors
from treasury.stripe import services as stripe_services
from treasury.stripe.models import OnboardingStatus, StripeAccount

ENTRIES_PER_PAGE = 25
PAYOUTS_PER_PAGE = 20
REPORTS_SHOWN = 30
FORM_REFUSED = 400
UNFINISHED_REPORT = (ReportStatus.QUEUED, ReportStatus.RUNNING)
REPORT_PARAMETER_LABELS = {
    "tax_year": "Tax year",
    "period_start": "From",
    "period_end": "To (included)",
    "currency": "Currency",
    "country": "VAT country",
}


class RecipientPage(LoginRequiredMixin, View):
    """Signed-in hosts and artists only: anyone else signed in gets a 403 page that says
    where to go instead (admins: the admin)."""

    login_url = reverse_lazy("portal:login")

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return self.handle_no_permission()
        if request.user.role not in RECIPIENT_ROLES:
            return render(request, "portal/not_for_you.html", status=403)
        return super().dispatch(request, *args, **kwargs)

    @property
    def user(self) -> User:
        return self.request.user  # type: ignore[return-value]


def _page(request: HttpRequest, rows: Any, per_page: int) -> Page:
    return Paginator(rows, per_page).get_page(request.GET.get("page"))


def _connected_account(user: User) -> StripeAccount | None:
    try:
        return stripe_selectors.connected_account_of(user=user)
    except NotFound:
        return None


# --- overview ---


class HomeView(RecipientPage):
    def get(self, request: HttpRequest) -> HttpResponse:
        balances = selectors.currency_balances(user=self.user)
        currencies = [b.currency for b in balances]
        chart_form = ChartForm(request.GET or None, currencies=currencies)
        context: dict[str, Any] = {
            "balances": balances,
            "chart_form": chart_form,
            "account": _connected_account(self.user),
            "recent_payouts": payout_selectors.payouts_for(user=self.user)[:5],
        }
        if currencies:  # no ledger account yet: nothing to chart
            chosen = chart_form.cleaned_data if chart_form.is_valid() else {}
            earnings = selectors.daily_earnings(
                user=self.user,
                currency=chosen.get("currency") or currencies[0],
                days=chosen.get("days") or selectors.CHART_DAYS[0],
            )
            context["earnings"] = earnings
            # The chart's data: integer minor units, formatted in the browser with integers.
            context["chart"] = {
                "currency": earnings.currency,
                "digits": minor_units(earnings.currency),
                "labels": [day.isoformat() for day in earnings.days],
                "cents": earnings.cents,
            }
            context["chart_rows"] = list(zip(earnings.days, earnings.cents, strict=True))[::-1]
        return render(request, "portal/home.html", context)


# --- ledger entries ---


class EntriesView(RecipientPage):
    def get(self, request: HttpRequest) -> HttpResponse:
        currencies = selectors.account_currencies(user=self.user)
        form = EntryFilterForm(request.GET or None, currencies=currencies)
        rows = ledger_selectors.entries(user_id=self.user.pk)
        status = 200
        if form.is_bound and form.is_valid():
            data = form.cleaned_data
            start, end = period_bounds(data.get("date_from"), data.get("date_to"))
            rows = ledger_selectors.entries(
                user_id=self.user.pk,
                currency=data.get("currency") or None,
                event_source=data.get("kind") or None,
                created_from=start,
                created_to=end,
            )
        elif form.is_bound:
            status = FORM_REFUSED
            rows = rows.none()
        query = request.GET.copy()
        query.pop("page", None)
        return render(
            request,
            "portal/entries.html",
            {"form": form, "page": _page(request, rows, ENTRIES_PER_PAGE), "query": query},
            status=status,
        )


# --- payouts ---


# What a payout's confirmation is good for: long enough to read it, short enough that the
# balance it was checked against is still today's.
PAYOUT_CONFIRMATION_MAX_AGE = 15 * 60
PAYOUT_CONFIRMATION_SALT = "portal.payout-confirmation"
PAYOUT_ARRIVAL = {
    "standard": "Usually within 2 business days: the transfer to your Stripe account is"
    " immediate, then Stripe pays your bank on its schedule.",
    "instant": "Within about 30 minutes, to your debit card or bank account.",
}


@dataclass(frozen=True)
class PayoutQuote:
    """What the person is asked to confirm, exactly as it will be requested."""

    user_id: str
    currency: str
    amount_cents: int
    fee_cents: int
    method: str
    idempotency_key: str

    @property
    def net_cents(self) -> int:
        return self.amount_cents - self.fee_cents

    @property
    def arrival(self) -> str:
        return PAYOUT_ARRIVAL.get(self.method, "")

    def token(self) -> str:
        return signing.dumps(asdict(self), salt=PAYOUT_CONFIRMATION_SALT, compress=True)

    @classmethod
    def from_token(cls, token: str, *, user: User) -> PayoutQuote | None:
        """The quote this user was shown, or None if it is not theirs, was altered, or is
        older than PAYOUT_CONFIRMATION_MAX_AGE."""
        try:
            data = signing.loads(
                token, salt=PAYOUT_CONFIRMATION_SALT, max_age=PAYOUT_CONFIRMATION_MAX_AGE
            )
            quote = cls(**data)
        except (signing.BadSignature, TypeError, ValueError):
            return None
        return quote if quote.user_id == str(user.pk) else None


class PayoutsView(RecipientPage):
    """Two steps: the form's POST only quotes the payout (amount, fee, what arrives, when)
    and shows it for confirmation; the confirmation's POST (a signed quote) requests it.
    Nothing is requested before the person has read the amount as the page understood it."""

    template = "portal/payouts.html"

    def _render(self, form: PayoutRequestForm, status: int = 200) -> HttpResponse:
        return render(
            self.request,
            self.template,
            {
                "form": form,
                "balances": selectors.currency_balances(user=self.user),
                "account": _connected_account(self.user),
                "page": _page(
                    self.request, payout_selectors.payouts_for(user=self.user), PAYOUTS_PER_PAGE
                ),
            },
            status=status,
        )

    def _currencies(self) -> list[str]:
        return payout_selectors.payout_currencies(user=self.user)

    def _form(self, data: Any = None, **kwargs: Any) -> PayoutRequestForm:
        return PayoutRequestForm(
            data, currencies=self._currencies(), locale=request_locale(self.request), **kwargs
        )

    def get(self, request: HttpRequest) -> HttpResponse:
        # "Change" on the confirmation comes back here with what was typed.
        initial = {k: request.GET[k] for k in ("currency", "amount", "method") if k in request.GET}
        return self._render(self._form(initial=initial))

    def post(self, request: HttpRequest) -> HttpResponse:
        if "confirmation" in request.POST:
            return self._confirmed(request.POST["confirmation"])
        form = self._form(request.POST)
        if not form.is_valid():
            return self._render(form, FORM_REFUSED)
        quote = self._quote(form)
        if quote is None:
            return self._render(form, FORM_REFUSED)
        return render(
            request,
            "portal/payout_confirm.html",
            {
                "quote": quote,
                "token": quote.token(),
                "change_query": urlencode(
                    {
                        "currency": quote.currency,
                        "amount": format_input(
                            quote.amount_cents, quote.currency, locale=request_locale(request)
                        ),
                        "method": quote.method,
                    }
                ),
            },
        )

    def _quote(self, form: PayoutRequestForm) -> PayoutQuote | None:
        """The payout as it would be requested now, or None with the reason on the form.
        The payouts service checks all of it again when the confirmation comes."""
        data = form.cleaned_data
        currency, method = data["currency"], data["method"]
        account = _connected_account(self.user)
        if account is None or account.onboarding_status != OnboardingStatus.COMPLETED:
            form.add_error(
                None, "payouts need a connected Stripe account with onboarding completed"
            )
            return None
        available = payout_selectors.available_balance(user=self.user, currency=currency)
        amount = available if data["amount_cents"] is None else data["amount_cents"]
        if amount <= 0:
            form.add_error("amount", f"nothing is available for payout in {currency}")
            return None
        if amount > available:
            form.add_error(
                "amount",
                f"{format_money(amount, currency)} exceeds the available balance of"
                f" {format_money(available, currency)}",
            )
            return None
        fee = 0
        if method == PayoutMethod.INSTANT:
            fee = payout_services.instant_fee_cents(amount_cents=amount, currency=currency)
        if fee >= amount:
            form.add_error(
                "amount",
                f"an instant payout of {format_money(amount, currency)} does not cover its fee"
                f" of {format_money(fee, currency)}",
            )
            return None
        return PayoutQuote(
            user_id=str(self.user.pk),
            currency=currency,
            amount_cents=amount,
            fee_cents=fee,
            method=method,
            idempotency_key=data["idempotency_key"],
        )

    def _refused(self, initial: dict[str, str], error: TreasuryError | str) -> HttpResponse:
        """A new form (a new idempotency key), filled in with `initial`, saying why."""
        form = self._form(initial=initial)
        form.cleaned_data = {}  # an unbound form takes errors only once it has this
        if isinstance(error, TreasuryError):
            add_service_error(
                form, error, {"amount_cents": "amount", "currency": "currency", "method": "method"}
            )
        else:
            form.add_error(None, error)
        return self._render(form, FORM_REFUSED)

    def _confirmed(self, token: str) -> HttpResponse:
        request = self.request
        quote = PayoutQuote.from_token(token, user=self.user)
        if quote is None:
            return self._refused(
                {},
                "This confirmation is no longer valid (it is older than 15 minutes or was"
                " changed). Enter the amount again.",
            )
        try:
            # The exact amount confirmed, never "everything": what the person read is paid.
            payout = payout_services.initiate_payout(
                user=self.user,
                amount_cents=quote.amount_cents,
                currency=quote.currency,
                method=quote.method,
                idempotency_key=quote.idempotency_key,
            )
        except TreasuryError as exc:
            typed = format_input(quote.amount_cents, quote.currency, locale=request_locale(request))
            return self._refused(
                {"currency": quote.currency, "amount": typed, "method": quote.method}, exc
            )
        if payout.status == "held":
            messages.warning(request, f"Payout #{payout.pk} is held for a review by our team.")
        else:
            messages.success(request, f"Payout #{payout.pk} requested.")
        return redirect("portal:payout", payout_id=payout.pk)


class PayoutDetailView(RecipientPage):
    def get(self, request: HttpRequest, payout_id: int) -> HttpResponse:
        try:
            payout = payout_selectors.payout_for(user=self.user, payout_id=payout_id)
        except NotFound as exc:
            raise Http404(exc.message) from exc
        return render(request, "portal/payout.html", {"payout": payout})


# --- split rules ---


def _split_rule(user: User, rule_id: int) -> SplitRule:
    try:
        return split_selectors.get_split_rule(user=user, rule_id=rule_id)
    except NotFound as exc:
        raise Http404(exc.message) from exc


def _split_terms() -> dict[str, Any]:
    """The platform's default terms, shown beside the form (a host cannot change them)."""
    return split_services.platform_default_values()


class SplitRulesView(RecipientPage):
    def get(self, request: HttpRequest) -> HttpResponse:
        show_archived = request.GET.get("archived") == "1"
        rules = split_selectors.split_rules_for(user=self.user, include_archived=show_archived)
        return render(
            request,
            "portal/splits.html",
            {"rules": rules, "show_archived": show_archived, "terms": _split_terms()},
        )


class SplitRuleFormView(RecipientPage):
    """Create a rule (no rule_id) or write the next version of one (rule_id)."""

    def _current(self, rule_id: int | None) -> SplitRule | None:
        if rule_id is None:
            return None
        rule = _split_rule(self.user, rule_id)
        if rule.is_archived or not rule.is_current:
            raise Http404("only the current version of a rule that is not archived can change")
        return rule

    def _render(
        self, form: SplitRuleForm, recipients: Any, rule: SplitRule | None, status: int = 200
    ) -> HttpResponse:
        return render(
            self.request,
            "portal/split_form.html",
            {
                "form": form,
                "recipients": recipients,
                "rule": rule,
                "terms": _split_terms(),
                "me": self.user,
            },
            status=status,
        )

    def get(self, request: HttpRequest, rule_id: int | None = None) -> HttpResponse:
        rule = self._current(rule_id)
        if rule is None:
            form = SplitRuleForm()
            initial = [{"recipient_id": str(self.user.pk), "share": "100"}]
        else:
            form = SplitRuleForm(initial={"name": rule.name, "is_default": rule.is_default})
            initial = recipient_initial(rule.rules)
        return self._render(form, RecipientFormSet(prefix="recipients", initial=initial), rule)

    def post(self, request: HttpRequest, rule_id: int | None = None) -> HttpResponse:
        rule = self._current(rule_id)
        form = SplitRuleForm(request.POST)
        recipients = RecipientFormSet(
            request.POST, prefix="recipients", form_kwargs={"locale": request_locale(request)}
        )
        if not (form.is_valid() and recipients.is_valid()):
            return self._render(form, recipients, rule, FORM_REFUSED)
        values = {
            "name": form.cleaned_data["name"],
            "is_default": form.cleaned_data["is_default"],
            "recipients": recipients.recipients(),
        }
        try:
            if rule is None:
                saved = split_services.create_split_rule(
                    owner=self.user, actor=self.user, **_split_terms(), **values
                )
            else:
                saved = split_services.update_split_rule(rule=rule, actor=self.user, **values)
        except TreasuryError as exc:
            _place_split_error(form, recipients, exc)
            return self._render(form, recipients, rule, FORM_REFUSED)
        if rule is None:
            messages.success(request, f"Split rule “{saved.name}” created.")
        elif saved.pk == rule.pk:
            messages.info(request, "Nothing changed.")
        else:
            messages.success(request, f"Saved as version {saved.version}.")
        return redirect("portal:split", rule_id=saved.pk)


def _place_split_error(form: SplitRuleForm, recipients: Any, exc: TreasuryError) -> None:
    """The splits service names fields `recipients.<i>.recipient_id` / `.share_bps`: the
    message goes under that row's field."""
    for name, field_messages in exc.fields.items():
        parts = name.split(".")
        if len(parts) == 3 and parts[0] == "recipients" and parts[1].isdigit():
            index = int(parts[1])
            field = {"recipient_id": "recipient_id", "share_bps": "share"}.get(parts[2])
            if field and index < len(recipients.forms):
                recipients.forms[index].add_error(field, field_messages[0])
                return
    add_service_error(form, exc, {"name": "name", "is_default": "is_default"})


class SplitRuleDetailView(RecipientPage):
    def get(self, request: HttpRequest, rule_id: int) -> HttpResponse:
        rule = _split_rule(self.user, rule_id)
        versions = split_selectors.rule_versions(rule=rule).filter(owner_id=self.user.pk)
        return render(
            request, "portal/split.html", {"rule": rule, "versions": versions, "me": self.user}
        )


class SplitRuleArchiveView(RecipientPage):
    def post(self, request: HttpRequest, rule_id: int) -> HttpResponse:
        rule = _split_rule(self.user, rule_id)
        archived = split_services.archive_split_rule(rule=rule, actor=self.user)
        messages.success(request, f"Split rule “{archived.name}” archived.")
        return redirect("portal:splits")


# --- connected account ---


class AccountView(RecipientPage):
    def get(self, request: HttpRequest) -> HttpResponse:
        return render(
            request,
            "portal/account.html",
            {"account": _connected_account(self.user), "statuses": OnboardingStatus},
        )


class OnboardView(RecipientPage):
    """Start or continue Stripe's onboarding: the account is created at Stripe on the first
    call, then the browser goes to Stripe's onboarding link."""

    def post(self, request: HttpRequest) -> HttpResponse:
        try:
            link = stripe_services.start_onboarding(user=self.user)
        except TreasuryError as exc:
            messages.error(request, exc.message)
            return redirect("portal:account")
        if link.url:
            return HttpResponseRedirect(link.url)
        messages.info(request, f"Onboarding is {link.account.onboarding_status}.")
        return redirect("portal:account")


# --- reports ---


class ReportsView(RecipientPage):
    def _render(
        self,
        form_1099: Report1099Form | None = None,
        form_vat: VatInvoiceReportForm | None = None,
        status: int = 200,
    ) -> HttpResponse:
        recent = [
            _with_downloads(r)
            for r in _own_reports(self.user).order_by("-created_at", "-id")[:REPORTS_SHOWN]
        ]
        return render(
            self.request,
            "portal/reports.html",
            {
                "form_1099": form_1099 or Report1099Form(prefix="t1099"),
                "form_vat": form_vat or VatInvoiceReportForm(prefix="vat"),
                "reports": recent,
                "working": any(r.status in UNFINISHED_REPORT for r in recent),
            },
            status=status,
        )

    def get(self, request: HttpRequest) -> HttpResponse:
        return self._render()

    def post(self, request: HttpRequest) -> HttpResponse:
        kind = request.POST.get("report")
        if kind == ReportType.EARNINGS_1099:
            form: Any = Report1099Form(request.POST, prefix="t1099")
            forms_ = {"form_1099": form}
        elif kind == ReportType.VAT_INVOICE:
            form = VatInvoiceReportForm(request.POST, prefix="vat")
            forms_ = {"form_vat": form}
        else:
            raise Http404("unknown report")
        if not form.is_valid():
            return self._render(**forms_, status=FORM_REFUSED)
        try:
            report = report_services.request_report(
                requester=self.user, report_type=kind, report_format=form.cleaned_data["format"],
                **{k: v for k, v in form.cleaned_data.items() if k != "format" and v},
            )  # fmt: skip
        except TreasuryError as exc:
            add_service_error(form, exc, {f: f for f in form.fields})
            return self._render(**forms_, status=FORM_REFUSED)
        if getattr(report, "was_deduplicated", False):
            messages.info(request, f"You asked for this a moment ago: report #{report.pk}.")
        else:
            messages.success(request, f"Report #{report.pk} is being prepared.")
        return redirect("portal:reports")


class ReportDetailView(RecipientPage):
    def get(self, request: HttpRequest, report_id: int) -> HttpResponse:
        report = None
        if report_id <= payout_selectors.MAX_BIGINT:
            report = _own_reports(self.user).filter(pk=report_id).first()
        if report is None:
            raise Http404(f"report {report_id} not found")
        return render(request, "portal/report.html", {"report": _with_downloads(report)})


def _own_reports(user: User) -> Any:
    return report_selectors.visible_reports().filter(user_id=user.pk)


def _with_downloads(report: Report) -> Report:
    """Files are downloaded through the reports API (session-authenticated, audited): the
    report gets `download_url` (its main file) and `downloads` (its other files)."""
    report.covers = [  # type: ignore[attr-defined]
        (REPORT_PARAMETER_LABELS[name], value)
        for name, value in report.parameters.items()
        if value and name in REPORT_PARAMETER_LABELS
    ]
    report.download_url = None  # type: ignore[attr-defined]
    report.downloads = []  # type: ignore[attr-defined]
    if report.status == ReportStatus.DONE:
        base = reverse("report-download", kwargs={"report_id": report.pk})
        report.download_url = base  # type: ignore[attr-defined]
        report.downloads = [  # type: ignore[attr-defined]
            {**f, "url": f"{base}?{urlencode({'file': f['name']})}"} for f in report.files
        ]
    return report
