"""1099 earnings: per payee, currency and tax year, what their payable account tells.

From the entries on `user:<id>:payable:<ccy>` whose transaction's effective time falls in the
tax year (UTC), classified by selectors.EARNINGS_CATEGORY_SQL:

- gross: credits by charges (`stripe_charge`): the payee's share of each sale, after the
  platform's fee; `monthly_gross` is the same per month, as a 1099-K's boxes 5a-5l list it;
- fees: debits by charges (the Stripe fee, when the split rule makes recipients bear it);
- refunds, dispute_losses: debits less credits by refunds and disputes (a won dispute
  gives back what it took);
- adjustments: credits less debits by manual adjustments;
- net = gross - fees - refunds - dispute_losses + adjustments;
- payouts: debits less credits by payouts (a failed payout's reversal nets it out);
- other: credits less debits by anything unrecognised (reported, not counted in net);
- payable_change: credits less debits of all of them (= net - payouts + other), which
  reconciles with the account's balance over the year.

`above_threshold` is true when gross (in REPORTING_1099_THRESHOLD_CURRENCY) exceeds
REPORTING_1099_THRESHOLD_CENTS and the charges exceed REPORTING_1099_MIN_TRANSACTIONS;
null for other currencies (nothing is converted).
"""

from __future__ import annotations

import calendar
from typing import Any

import pandas as pd
from django.conf import settings
from django.utils import timezone

from ledger.money import format_minor
from reporting import selectors
from reporting.generators.base import GeneratedReport, dump_json, store_main, write_csv
from reporting.models import Report, ReportFormat
from reporting.progress import Progress
from reporting.storage import OutputFile
from treasury.rls import system_context

MONTHS = [calendar.month_name[m].lower() for m in range(1, 13)]
FIGURES = (
    "gross",
    "fees",
    "refunds",
    "dispute_losses",
    "adjustments",
    "net",
    "payouts",
    "other",
    "payable_change",
)
KEYS = ["payee_id", "currency"]


def earnings_frame(rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    """One row per payee and currency: the figures (int64 minor units), the charge count
    and the monthly gross; computed with integer pandas columns only."""
    movements = pd.DataFrame(rows, columns=list(selectors.EARNINGS_COLUMNS))
    for column in ("month", "credits_cents", "debits_cents", "transactions"):
        movements[column] = movements[column].astype("int64")
    movements["payee_id"] = movements["payee_id"].astype(str)
    if movements.empty:
        return pd.DataFrame(columns=[*KEYS, "email", "display_name"])

    sums = movements.pivot_table(
        index=KEYS,
        columns="category",
        values=["credits_cents", "debits_cents", "transactions"],
        aggfunc="sum",
        fill_value=0,
    )

    def part(metric: str, category: str) -> pd.Series:
        if (metric, category) in sums.columns:
            return sums[(metric, category)].astype("int64")
        return pd.Series(0, index=sums.index, dtype="int64")

    def credits_less_debits(category: str) -> pd.Series:
        return part("credits_cents", category) - part("debits_cents", category)

    figures = pd.DataFrame(index=sums.index)
    figures["transactions"] = part("transactions", "charges")
    figures["gross"] = part("credits_cents", "charges")
    figures["fees"] = part("debits_cents", "charges")
    figures["refunds"] = -credits_less_debits("refunds")
    figures["dispute_losses"] = -credits_less_debits("dispute_losses")
    figures["adjustments"] = credits_less_debits("adjustments")
    figures["net"] = (
        figures["gross"]
        - figures["fees"]
        - figures["refunds"]
        - figures["dispute_losses"]
        + figures["adjustments"]
    )
    figures["payouts"] = -credits_less_debits("payouts")
    figures["other"] = credits_less_debits("other")
    figures["payable_change"] = (
        sums["credits_cents"].sum(axis=1) - sums["debits_cents"].sum(axis=1)
    ).astype("int64")

    charges = movements[movements["category"] == "charges"]
    monthly = charges.pivot_table(
        index=KEYS, columns="month", values="credits_cents", aggfunc="sum", fill_value=0
    ).reindex(index=sums.index, columns=range(1, 13), fill_value=0)
    monthly = monthly.fillna(0).astype("int64")
    monthly.columns = [f"gross_{month}" for month in MONTHS]

    names = movements.groupby(KEYS)[["email", "display_name"]].first()
    result = figures.join(monthly).join(names).reset_index()
    return result.sort_values(["currency", "email", "payee_id"], kind="stable")


def above_threshold(currency: str, gross_cents: int, transactions: int) -> bool | None:
    if currency != settings.REPORTING_1099_THRESHOLD_CURRENCY.upper():
        return None
    return (
        gross_cents > settings.REPORTING_1099_THRESHOLD_CENTS
        and transactions > settings.REPORTING_1099_MIN_TRANSACTIONS
    )


def payee_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    records = []
    for row in frame.to_dict("records"):
        currency = row["currency"]
        record: dict[str, Any] = {
            "payee_id": row["payee_id"],
            "email": row["email"],
            "display_name": row["display_name"],
            "currency": currency,
            "transactions": int(row["transactions"]),
        }
        for name in FIGURES:
            cents = int(row[name])
            record[f"{name}_cents"] = cents
            record[name] = format_minor(cents, currency)
        record["above_threshold"] = above_threshold(
            currency, record["gross_cents"], record["transactions"]
        )
        record["monthly_gross_cents"] = {m: int(row[f"gross_{m}"]) for m in MONTHS}
        record["monthly_gross"] = {
            m: format_minor(cents, currency) for m, cents in record["monthly_gross_cents"].items()
        }
        records.append(record)
    return records


CSV_HEADER = [
    "payee_id",
    "email",
    "display_name",
    "currency",
    "transactions",
    *(column for name in FIGURES for column in (f"{name}_cents", name)),
    "above_threshold",
    *(column for m in MONTHS for column in (f"gross_{m}_cents", f"gross_{m}")),
]


def csv_row(record: dict[str, Any]) -> list[Any]:
    row = [record[c] for c in ("payee_id", "email", "display_name", "currency", "transactions")]
    for name in FIGURES:
        row += [record[f"{name}_cents"], record[name]]
    row.append(record["above_threshold"])
    for m in MONTHS:
        row += [record["monthly_gross_cents"][m], record["monthly_gross"][m]]
    return row


def generate(*, report: Report, progress: Progress) -> GeneratedReport:
    params = report.parameters
    tax_year = int(params["tax_year"])
    with system_context():
        rows = selectors.payable_movements(
            tax_year=tax_year, currency=params.get("currency"), user_id=params.get("user_id")
        )
    progress.update(20)
    records = payee_records(earnings_frame(rows))
    progress.update(60)

    output = OutputFile()
    with output.text() as out:
        if report.format == ReportFormat.JSON:
            dump_json(
                {
                    "report": "1099",
                    "report_id": report.pk,
                    "tax_year": tax_year,
                    "currency": params.get("currency"),
                    "user_id": params.get("user_id"),
                    "generated_at": timezone.now(),
                    "time_zone": "UTC",
                    "threshold": {
                        "gross_cents": settings.REPORTING_1099_THRESHOLD_CENTS,
                        "currency": settings.REPORTING_1099_THRESHOLD_CURRENCY.upper(),
                        "transactions": settings.REPORTING_1099_MIN_TRANSACTIONS,
                    },
                    "payees": records,
                },
                out,
            )
        else:
            write_csv(out, CSV_HEADER, (csv_row(r) for r in records))
    progress.update(90)
    filename = f"1099-{tax_year}-report-{report.pk}.{report.format}"
    return GeneratedReport(main=store_main(report, output, filename), row_count=len(records))
