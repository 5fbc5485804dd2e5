from analytics import api
from treasury.urls import api_path

urlpatterns = [
    api_path("reports/analytics", api.AnalyticsView.as_view(), "reports-analytics"),
]
