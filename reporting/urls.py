from reporting import api
from treasury.urls import api_path

urlpatterns = [
    api_path("reports", api.ReportListView.as_view(), "reports"),
    api_path("reports/generate", api.GenerateReportView.as_view(), "reports-generate"),
    api_path(r"reports/(?P<report_id>[0-9]+)", api.ReportDetailView.as_view(), "report"),
    api_path(r"reports/(?P<report_id>[0-9]+)/retry", api.ReportRetryView.as_view(), "report-retry"),
    api_path(
        r"reports/download/(?P<report_id>[0-9]+)",
        api.ReportDownloadView.as_view(),
        "report-download",
    ),
]
