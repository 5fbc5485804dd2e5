"""What every generator shares: where files go, how a result looks, JSON and CSV helpers."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, TextIO
from uuid import UUID

from reporting.models import CONTENT_TYPES, Report, ReportFormat
from reporting.storage import OutputFile, StoredFile


@dataclass(frozen=True)
class GeneratedReport:
    main: StoredFile
    row_count: int
    files: list[StoredFile] = field(default_factory=list)


def report_location(report: Report, filename: str) -> str:
    """Storage name of a report's file: one folder per report, so names never collide."""
    return f"reports/{report.type}/{report.pk}/{filename}"


def json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if hasattr(value, "item"):  # a numpy scalar (pandas' int64)
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dump_json(document: Any, out: TextIO) -> None:
    json.dump(document, out, default=json_default, ensure_ascii=False, indent=2)
    out.write("\n")


def write_csv(out: TextIO, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    count = 0
    for row in rows:
        writer.writerow([cell_text(value) for value in row])
        count += 1
    return count


def cell_text(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def store_main(report: Report, output: OutputFile, filename: str) -> StoredFile:
    return output.store(
        location=report_location(report, filename),
        name=filename,
        content_type=CONTENT_TYPES[ReportFormat(report.format)],
    )
