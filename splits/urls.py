from __future__ import annotations

from splits import api
from treasury.urls import api_path

urlpatterns = [
    api_path("split-rules", api.SplitRuleListView.as_view(), "split-rules"),
    api_path(r"split-rules/(?P<rule_id>[0-9]+)", api.SplitRuleDetailView.as_view(), "split-rule"),
]
