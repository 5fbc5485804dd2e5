from __future__ import annotations

from disputes import api
from treasury.urls import api_path

urlpatterns = [
    api_path("refunds", api.RefundsView.as_view(), "refunds"),
    api_path(
        r"refunds/(?P<refund_id>[0-9]{1,19})", api.RefundDetailView.as_view(), "refunds-detail"
    ),
    api_path("disputes", api.DisputesView.as_view(), "disputes"),
    api_path("disputes/open", api.OpenDisputesView.as_view(), "disputes-open"),
    api_path("disputes/comment", api.CommentView.as_view(), "disputes-comment"),
]
