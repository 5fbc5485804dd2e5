"""Ledger export: every entry of a period / user / currency with its transaction, account and
the transaction's metadata, as CSV or JSON.

Memory stays flat whatever the size: rows come from a server-side cursor a chunk at a time
(selectors.export_rows) and go straight to a temporary file, which is then saved to the
storage in chunks. Nothing holds more than one chunk of rows.
"""

from __future__ import annotations

import csv
import json
from datetime import date

from django.conf import settings
from django.utils import timezone

from ledger.money import format_minor
from reporting import selectors
from reporting.generators.base import GeneratedReport, json_default, store_main
from reporting.models import Report, ReportFormat
from reporting.progress import Progress
from reporting.storage import OutputFile
from treasury.rls import system_context

CSV_HEADER = [*selectors.EXPORT_COLUMNS, "amount", "metadata"]
AMOUNT = selectors.EXPORT_COLUMNS.index("amount_cents")
CURRENCY = selectors.EXPORT_COLUMNS.index("currency")


def generate(*, report: Report, progress: Progress) -> GeneratedReport:
    params = report.parameters
    query = selectors.ExportQuery(
        user_id=params.get("user_id"),
        currency=params.get("currency"),
        period_start=date.fromisoformat(params["period_start"])
        if params.get("period_start")
        else None,
        period_end=date.fromisoformat(params["period_end"]) if params.get("period_end") else None,
    )
    chunk_size = settings.REPORTING_EXPORT_CHUNK_SIZE
    output = OutputFile()
    written = 0
    # One transaction: the system context and the server-side cursor live in it. The count
    # is for progress only; the cursor's snapshot decides which entries are written.
    with system_context(), output.text() as out:
        total = selectors.export_count(query)
        progress.update(2)
        rows = selectors.export_rows(query, chunk_size=chunk_size)
        if report.format == ReportFormat.JSON:
            out.write(f'{{"report": "ledger_export", "report_id": {report.pk}, ')
            out.write(f'"parameters": {json.dumps(params, default=json_default)}, ')
            out.write(f'"generated_at": {json.dumps(timezone.now().isoformat())}, "entries": [')
            for row in rows:
                *fields, metadata_json = row
                record = dict(zip(selectors.EXPORT_COLUMNS, fields, strict=True))
                record["amount"] = format_minor(fields[AMOUNT], fields[CURRENCY])
                text = json.dumps(record, default=json_default, ensure_ascii=False)
                # The metadata is PostgreSQL's own JSON text: spliced in, not re-parsed.
                out.write(("\n" if written == 0 else ",\n") + text[:-1])
                out.write(', "metadata": ' + (metadata_json or "{}") + "}")
                written += 1
                if written % chunk_size == 0:
                    progress.fraction(written, total, start=2, end=95)
            out.write(f'\n], "row_count": {written}}}\n')
        else:
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(CSV_HEADER)
            for row in rows:
                *fields, metadata_json = row  # None is written as an empty cell
                amount = format_minor(fields[AMOUNT], fields[CURRENCY])
                writer.writerow([*fields, amount, metadata_json or "{}"])
                written += 1
                if written % chunk_size == 0:
                    progress.fraction(written, total, start=2, end=95)
    start = params.get("period_start") or "start"
    end = params.get("period_end") or "now"
    filename = f"ledger-export-{start}-{end}-report-{report.pk}.{report.format}"
    return GeneratedReport(main=store_main(report, output, filename), row_count=written)
