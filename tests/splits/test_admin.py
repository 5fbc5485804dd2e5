"""The back office: rules are looked at, searched and archived (through the service)."""

from __future__ import annotations

import pytest
from django.test import Client

from splits.models import SplitRule
from splits.services import update_split_rule
from tests.factories import DEFAULT_PASSWORD, SplitRuleFactory
from treasury.models import AuditLog
from treasury.rls import system_context

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(admin_user) -> Client:
    client = Client()
    assert client.login(email=admin_user.email, password=DEFAULT_PASSWORD)
    return client


def test_the_list_filters_and_searches(admin_client, host, other_host):
    SplitRuleFactory(owner=host, name="Main stage")
    SplitRuleFactory(owner=other_host, name="Side stage", stripe_fee_bearer="recipients")
    page = admin_client.get("/admin/splits/splitrule/?q=main")
    assert page.status_code == 200
    assert [r.name for r in page.context["cl"].result_list] == ["Main stage"]
    page = admin_client.get(
        "/admin/splits/splitrule/?stripe_fee_bearer__exact=recipients&archived=no&owner__role=host"
    )
    assert [r.name for r in page.context["cl"].result_list] == ["Side stage"]
    page = admin_client.get(f"/admin/splits/splitrule/?q={other_host.email}")
    assert [r.name for r in page.context["cl"].result_list] == ["Side stage"]


def test_a_rule_page_shows_its_versions_and_cannot_be_edited(admin_client, admin_user, host):
    rule = SplitRuleFactory(owner=host, name="First name")
    with system_context():
        update_split_rule(rule=rule, actor=admin_user, name="Second name")
    page = admin_client.get(f"/admin/splits/splitrule/{rule.pk}/change/")
    assert page.status_code == 200
    content = page.content.decode()
    assert "v1" in content and "v2" in content and "Second name" in content
    response = admin_client.post(f"/admin/splits/splitrule/{rule.pk}/change/", {"name": "edited"})
    assert response.status_code == 403
    assert admin_client.get("/admin/splits/splitrule/add/").status_code == 403


def test_the_archive_action_archives_through_the_audited_service(admin_client, admin_user, host):
    rule = SplitRuleFactory(owner=host)
    response = admin_client.post(
        "/admin/splits/splitrule/",
        {"action": "archive_rules", "_selected_action": [rule.pk]},
    )
    assert response.status_code == 302
    with system_context():
        rule.refresh_from_db()
        audit = AuditLog.objects.get(action="split_rule.archive", target_id=str(rule.pk))
        assert not SplitRule.objects.filter(owner=host, archived_at__isnull=True).exists()
    assert rule.archived_at is not None
    assert audit.user_id == admin_user.pk
