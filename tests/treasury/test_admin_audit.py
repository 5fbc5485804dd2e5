from __future__ import annotations

import pytest
from django.test import Client

from tests.factories import DEFAULT_PASSWORD, UserFactory
from treasury.models import AuditLog
from treasury.rls import system_context

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(admin_user) -> Client:
    client = Client()
    assert client.login(email=admin_user.email, password=DEFAULT_PASSWORD)
    return client


def test_an_admin_change_writes_an_audit_row_with_before_and_after(admin_client, admin_user):
    target = UserFactory(display_name="Before Name")
    page = admin_client.get(f"/admin/treasury/user/{target.pk}/change/")
    assert page.status_code == 200
    form = page.context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None and k != "password"}
    data.update(display_name="After Name", groups=[], user_permissions=[])
    data["is_active"] = "on"
    response = admin_client.post(f"/admin/treasury/user/{target.pk}/change/", data)
    assert response.status_code == 302, response.content[:2000]
    with system_context():
        audit = AuditLog.objects.get(action="admin.change", target_id=str(target.pk))
    assert audit.user_id == admin_user.pk
    assert audit.before["display_name"] == "Before Name"
    assert audit.after["display_name"] == "After Name"
    assert "password" not in audit.after


def test_the_admin_login_page_logs_an_admin_in(admin_user):
    client = Client()
    response = client.post(
        "/admin/login/?next=/admin/",
        {"username": admin_user.email, "password": DEFAULT_PASSWORD},
    )
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200


def test_audit_logs_cannot_be_changed_from_the_admin(admin_client):
    with system_context():
        entry = AuditLog.objects.create(action="test.readonly")
    response = admin_client.post(f"/admin/treasury/auditlog/{entry.pk}/delete/", {"post": "yes"})
    assert response.status_code == 403
