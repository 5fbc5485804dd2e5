from anomalies import api
from treasury.urls import api_path

urlpatterns = [
    api_path("ai/anomalies/resolve", api.ResolveAnomalyView.as_view(), "ai-anomalies-resolve"),
    api_path("ai/anomalies", api.AnomaliesView.as_view(), "ai-anomalies"),
]
