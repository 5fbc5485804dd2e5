"""One module per report type. Each `generate(report=..., progress=...)` reads the books in
the system context (scoped by the report's parameters), writes its file(s) to the report
storage and returns what it wrote; services.run_report does the bookkeeping around it."""

from __future__ import annotations

from collections.abc import Callable

from reporting.generators.base import GeneratedReport
from reporting.models import Report, ReportType
from reporting.progress import Progress

Generator = Callable[..., GeneratedReport]


def generator_for(report_type: str) -> Generator:
    from reporting.generators import earnings_1099, ledger_export, vat_invoices

    generators: dict[str, Generator] = {
        ReportType.EARNINGS_1099: earnings_1099.generate,
        ReportType.VAT_INVOICE: vat_invoices.generate,
        ReportType.LEDGER_EXPORT: ledger_export.generate,
    }
    return generators[report_type]


__all__ = ["GeneratedReport", "Generator", "Progress", "Report", "generator_for"]
