"""Reports over HTTP: request one, watch its progress, download its file.

Another user's report is a 404 (row-level security makes it invisible); a download of a
report not done yet is a 409 that says its status.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.http import FileResponse
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from reporting import selectors, services
from reporting.models import Report, ReportFormat, ReportStatus, ReportType
from reporting.services import EARLIEST_TAX_YEAR
from reporting.storage import open_stored
from treasury.errors import NotFound, error_body
from treasury.fields import CurrencyField, InputSerializer, VisibleUserField
from treasury.pagination import Pagination
from treasury.rls import system_context
from treasury.services import record_audit


class GenerateReportSerializer(InputSerializer):
    type = serializers.ChoiceField(
        choices=ReportType.values, help_text="1099, vat_invoice or ledger_export."
    )
    format = serializers.ChoiceField(choices=ReportFormat.values, default=ReportFormat.CSV)
    tax_year = serializers.IntegerField(
        required=False,
        min_value=EARLIEST_TAX_YEAR,
        max_value=9999,
        help_text="1099 only: the calendar year (UTC), not in the future.",
    )
    period_start = serializers.DateField(
        required=False, help_text="VAT invoices (required) and ledger exports: first day."
    )
    period_end = serializers.DateField(
        required=False, help_text="Last day, inclusive; not before period_start."
    )
    currency = CurrencyField(required=False, help_text="All currencies if left out.")
    user = VisibleUserField(
        required=False,
        help_text="Admins: whose data (all payees/hosts if left out). Others: always their own"
        " (another user's id is a 404).",
    )
    country = serializers.RegexField(
        r"^[A-Za-z]{2}$",
        required=False,
        help_text="VAT invoices: the hosts' country, whose VAT rate applies"
        " (default REPORTING_VAT_DEFAULT_COUNTRY).",
    )


class ReportFileSerializer(serializers.Serializer):
    name = serializers.CharField()
    content_type = serializers.CharField()
    size_bytes = serializers.IntegerField()
    checksum_sha256 = serializers.CharField()
    download_url = serializers.CharField()


class ReportSerializer(serializers.ModelSerializer):
    user_id = serializers.UUIDField(read_only=True, allow_null=True)
    progress = serializers.IntegerField(source="progress_percent", read_only=True)
    url = serializers.SerializerMethodField()
    download_url = serializers.SerializerMethodField()
    files = serializers.SerializerMethodField()

    class Meta:
        model = Report
        fields = [
            "id",
            "user_id",
            "type",
            "format",
            "status",
            "progress",
            "parameters",
            "location",
            "filename",
            "content_type",
            "row_count",
            "size_bytes",
            "checksum_sha256",
            "files",
            "error",
            "attempts",
            "created_at",
            "started_at",
            "generated_at",
            "url",
            "download_url",
        ]
        read_only_fields = fields

    def get_url(self, report: Report) -> str:
        return reverse("report", kwargs={"report_id": report.pk})

    def get_download_url(self, report: Report) -> str | None:
        if report.status != ReportStatus.DONE:
            return None
        return reverse("report-download", kwargs={"report_id": report.pk})

    @extend_schema_field(ReportFileSerializer(many=True))
    def get_files(self, report: Report) -> list[dict[str, Any]]:
        base = reverse("report-download", kwargs={"report_id": report.pk})
        return [
            {
                "name": stored["name"],
                "content_type": stored["content_type"],
                "size_bytes": stored["size_bytes"],
                "checksum_sha256": stored["checksum_sha256"],
                "download_url": f"{base}?{urlencode({'file': stored['name']})}",
            }
            for stored in report.files
        ]


def _report_response(report: Report, *, deduplicated: bool | None = None) -> dict[str, Any]:
    body = dict(ReportSerializer(report).data)
    if deduplicated is not None:
        body["deduplicated"] = deduplicated
    return body


def _generate(request: Request, data: Any) -> Response:
    body = GenerateReportSerializer(data=data, context={"request": request})
    body.is_valid(raise_exception=True)
    given = body.validated_data
    report = services.request_report(
        requester=request.user,  # type: ignore[arg-type]
        report_type=given["type"],
        report_format=given["format"],
        tax_year=given.get("tax_year"),
        period_start=given.get("period_start"),
        period_end=given.get("period_end"),
        currency=given.get("currency"),
        user_id=given.get("user"),
        country=given.get("country"),
    )
    deduplicated = bool(getattr(report, "was_deduplicated", False))
    return Response(
        _report_response(report, deduplicated=deduplicated),
        status=status.HTTP_200_OK if deduplicated else status.HTTP_202_ACCEPTED,
    )


class ReportFilterSerializer(InputSerializer):
    status = serializers.ChoiceField(choices=ReportStatus.values, required=False)
    type = serializers.ChoiceField(choices=ReportType.values, required=False)


REPORT_ID = OpenApiParameter("report_id", int, OpenApiParameter.PATH)


class GenerateReportView(APIView):
    """Queue a report job and return its id at once (202); an identical request within the
    dedupe window returns the same report (200, `deduplicated: true`)."""

    @extend_schema(
        request=GenerateReportSerializer,
        responses={202: ReportSerializer, 200: ReportSerializer},
        summary="Request a report",
    )
    def post(self, request: Request) -> Response:
        return _generate(request, request.data)

    @extend_schema(
        parameters=[GenerateReportSerializer],
        responses={202: ReportSerializer, 200: ReportSerializer},
        deprecated=True,
        summary="Request a report (deprecated: use POST)",
        description="The seed's `GET /api/reports/generate`, kept for old clients: the same"
        " parameters as POST, in the query string. A GET that starts a job is not safe to"
        " retry blindly; it answers with a `Deprecation` header.",
    )
    def get(self, request: Request) -> Response:
        response = _generate(request, request.query_params)
        response["Deprecation"] = "true"
        response["Link"] = '</api/reports/generate>; rel="successor-version"; method="POST"'
        return response


class ReportListView(APIView):
    pagination_class = Pagination

    @extend_schema(parameters=[ReportFilterSerializer], responses=ReportSerializer(many=True))
    def get(self, request: Request) -> Response:
        query = ReportFilterSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        rows = selectors.visible_reports()
        if value := query.validated_data.get("status"):
            rows = rows.filter(status=value)
        if value := query.validated_data.get("type"):
            rows = rows.filter(type=value)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(rows, request, view=self)
        return paginator.get_paginated_response(ReportSerializer(page, many=True).data)


class ReportDetailView(APIView):
    """A report's status and progress (percent), and once done its file's size and checksum."""

    @extend_schema(parameters=[REPORT_ID], responses=ReportSerializer)
    def get(self, request: Request, report_id: int) -> Response:
        return Response(_report_response(selectors.report_for(report_id=report_id)))


class ReportRetryView(APIView):
    """Queue a failed report again (409 unless it failed)."""

    @extend_schema(parameters=[REPORT_ID], request=None, responses={202: ReportSerializer})
    def post(self, request: Request, report_id: int) -> Response:
        report = selectors.report_for(report_id=report_id)
        retried = services.retry_report(report=report, actor=request.user)  # type: ignore[arg-type]
        return Response(_report_response(retried), status=status.HTTP_202_ACCEPTED)


class ReportDownloadView(APIView):
    """The report's file, streamed with its content type and filename; `?file=<name>` one of
    its other files (a VAT report's invoice PDFs). 409 while the report is not done."""

    @extend_schema(
        parameters=[
            REPORT_ID,
            OpenApiParameter("file", str, description="one of the report's `files`"),
        ],
        responses={
            (200, "text/csv"): bytes,
            (200, "application/json"): bytes,
            (200, "application/pdf"): bytes,
        },
    )
    def get(self, request: Request, report_id: int) -> Any:
        report = selectors.report_for(report_id=report_id)
        if report.status != ReportStatus.DONE:
            body = error_body(
                "report_not_ready",
                f"report {report.pk} is {report.status}"
                + (f" ({report.progress_percent}%)" if report.status == "running" else "")
                + (f": {report.error}" if report.error else "")
                + ": download it once its status is done",
                {"status": [report.status]},
            )
            body.update(status=report.status, progress=report.progress_percent)
            return Response(body, status=status.HTTP_409_CONFLICT)
        main = {
            "name": report.filename,
            "location": report.location,
            "content_type": report.content_type,
            "checksum_sha256": report.checksum_sha256,
        }
        wanted = request.query_params.get("file")
        stored = next((f for f in report.files if f["name"] == wanted), None) if wanted else main
        if stored is None:
            raise NotFound(f"report {report.pk} has no file {wanted!r}")
        with system_context():
            record_audit(
                actor=request.user,  # type: ignore[arg-type]
                action="report.download",
                target=report,
                details={"file": stored["name"]},
            )
        response = FileResponse(
            open_stored(stored["location"]),
            as_attachment=True,
            filename=stored["name"],
            content_type=stored["content_type"],
        )
        response["X-Checksum-Sha256"] = stored["checksum_sha256"]
        return response
