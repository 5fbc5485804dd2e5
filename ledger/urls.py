from ledger import api
from treasury.urls import api_path

urlpatterns = [
    api_path("ledger/entries", api.EntriesView.as_view(), "ledger-entries"),
    api_path("ledger/balances", api.BalancesView.as_view(), "ledger-balances"),
]
