"""The admin's index shows the analytics charts (data as JSON in the page, Chart.js served
from the project's static files) and the ops counters."""

from __future__ import annotations

import contextlib
import json
import re

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from monitoring.models import RunStatus, VerificationRun
from tests.factories import DEFAULT_PASSWORD
from treasury.rls import system_context

from .conftest import CURRENCY, refresh

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(admin_user) -> Client:
    client = Client()
    assert client.login(email=admin_user.email, password=DEFAULT_PASSWORD)
    return client


def chart_data(html: str) -> dict:
    found = re.search(
        r'<script id="treasury-dashboard-data" type="application/json">(.*?)</script>',
        html,
        re.S,
    )
    assert found, "the chart data is in the page"
    return json.loads(found.group(1))


def test_the_index_charts_the_seeded_postings(market, admin_client):
    refresh()

    response = admin_client.get("/admin/")

    assert response.status_code == 200
    html = response.content.decode()
    data = chart_data(html)
    assert len(data["days"]) == 90 and data["days"][-1] == market.day.isoformat()
    sek = data["currencies"][CURRENCY]
    assert sek["gross_volume_cents"][-1] == 15000
    assert sek["platform_fee_cents"][-1] == 1167
    assert sek["refunds_cents"][-1] == 3333
    assert sek["disputes_cents"][-1] == 0
    assert sek["payouts_cents"][-1] == 2000
    assert sum(sek["gross_volume_cents"][:-1]) == 0
    assert '/static/vendor/chart.umd.js"' in html
    assert 'data-days="30"' in html and 'data-days="90"' in html
    # The app list is still there under the dashboard.
    assert "/admin/ledger/" in html


def test_the_index_shows_the_ops_counters(admin_client, admin_user):
    html = admin_client.get("/admin/").content.decode()
    assert 'id="tile-anomalies"' in html and 'id="tile-webhooks"' in html

    with system_context():
        VerificationRun.objects.all().delete()
    html = admin_client.get("/admin/").content.decode()
    assert "never run" in html

    # (Other test runs may have committed to this database: whatever verify_ledger found
    # is what the tile says.)
    with contextlib.suppress(CommandError):
        call_command("verify_ledger")
    html = admin_client.get("/admin/").content.decode()
    tile = html.split('id="tile-verification"', 1)[1].split('id="treasury-charts"', 1)[0]
    with system_context():
        last = VerificationRun.objects.order_by("-id").first()
    assert last is not None
    if last.status == RunStatus.CLEAN:
        assert "verified" in tile and last.difference_count == 0
    else:
        assert f"{last.difference_count} difference" in tile
    assert "never run" not in tile


def test_chart_js_is_vendored_unmodified():
    import hashlib
    from pathlib import Path

    from django.conf import settings

    vendored = Path(settings.BASE_DIR) / "treasury/static/vendor/chart.umd.js"
    content = vendored.read_bytes()
    assert content.startswith(b"/*!\n * Chart.js v4.4.7\n")
    assert hashlib.sha256(content).hexdigest() == (
        "2812cb8825fdc57469eb2f7bb055e9429244e599920511ee477e828499b632cb"
    )
