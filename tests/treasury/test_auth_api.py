from __future__ import annotations

from datetime import timedelta

import pytest
from rest_framework_simplejwt.tokens import AccessToken

from tests.factories import DEFAULT_PASSWORD, UserFactory
from treasury.models import AuditLog, User
from treasury.rls import system_context

pytestmark = pytest.mark.django_db


def user_count() -> int:
    with system_context():
        return User.objects.count()


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]


def test_signup_login_me_and_refresh(api_client):
    signup = api_client.post(
        "/api/auth/signup",
        {"email": "New.Host@Example.test", "password": "a-long-unusual-passphrase", "role": "host"},
        format="json",
    )
    assert signup.status_code == 201, signup.content
    assert signup.json()["user"]["email"] == "new.host@example.test"
    assert signup.json()["user"]["role"] == "host"

    login = api_client.post(
        "/api/auth/login/",
        {"email": "new.host@example.test", "password": "a-long-unusual-passphrase"},
        format="json",
    )
    assert login.status_code == 200, login.content
    tokens = login.json()

    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    me = api_client.get("/api/auth/me")
    assert me.status_code == 200
    assert me.json()["email"] == "new.host@example.test"

    refreshed = api_client.post("/api/auth/refresh", {"refresh": tokens["refresh"]}, format="json")
    assert refreshed.status_code == 200
    assert refreshed.json()["access"]
    with system_context():
        assert AuditLog.objects.filter(action="user.signup", target_id=me.json()["id"]).count() == 1


def test_signup_with_a_taken_email_is_a_conflict_and_writes_nothing(api_client):
    UserFactory(email="taken@example.test")
    before = user_count()
    response = api_client.post(
        "/api/auth/signup",
        {"email": "TAKEN@example.test", "password": "a-long-unusual-passphrase", "role": "buyer"},
        format="json",
    )
    error = assert_error(response, 409, "conflict")
    assert error["fields"] == {"email": ["taken"]}
    assert user_count() == before


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"email": "a@example.test", "password": "123", "role": "buyer"}, "password"),
        ({"email": "a@example.test", "password": "password", "role": "buyer"}, "password"),
        (
            {"email": "a@example.test", "password": "a-long-unusual-passphrase", "role": "admin"},
            "role",
        ),
        (
            {"email": "not-an-email", "password": "a-long-unusual-passphrase", "role": "buyer"},
            "email",
        ),
        ({"password": "a-long-unusual-passphrase", "role": "buyer"}, "email"),
    ],
)
def test_bad_signups_say_which_field_is_wrong(api_client, payload, field):
    before = user_count()
    error = assert_error(
        api_client.post("/api/auth/signup", payload, format="json"), 400, "invalid"
    )
    assert field in error["fields"]
    assert user_count() == before


def test_malformed_json_is_a_400_in_the_error_shape(api_client):
    response = api_client.generic(
        "POST", "/api/auth/signup", '{"email": "x@', content_type="application/json"
    )
    assert_error(response, 400, "parse_error")


def test_wrong_password_is_refused(api_client):
    user = UserFactory()
    response = api_client.post(
        "/api/auth/login", {"email": user.email, "password": "nope"}, format="json"
    )
    assert_error(response, 401, "no_active_account")


def test_missing_and_expired_tokens_are_401(api_client):
    assert_error(api_client.get("/api/auth/me"), 401, "not_authenticated")
    token = AccessToken.for_user(UserFactory())
    token.set_exp(lifetime=-timedelta(minutes=1))
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert_error(api_client.get("/api/auth/me"), 401, "token_not_valid")


def test_deleting_me_deactivates_and_pseudonymises(client_for, api_client):
    user = UserFactory(email="leaving@example.test")
    response = client_for(user).delete("/api/auth/me")
    assert response.status_code == 204
    with system_context():
        user.refresh_from_db()
        audit = AuditLog.objects.get(action="user.erase", target_id=str(user.pk))
    assert not user.is_active
    assert user.email == f"deleted-{user.pk}@users.invalid"
    # The erasure is audited without the personal data it erased (see tests/privacy).
    assert "leaving@" not in str(audit.before) + str(audit.after) + str(audit.details)
    login = api_client.post(
        "/api/auth/login",
        {"email": "leaving@example.test", "password": DEFAULT_PASSWORD},
        format="json",
    )
    assert login.status_code == 401


def test_unknown_api_path_is_json_404(api_client):
    assert_error(api_client.get("/api/nothing-here"), 404, "not_found")


def test_docs_and_schema_are_served_offline(api_client):
    schema = api_client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    assert "/api/auth/signup" in schema.content.decode()
    docs = api_client.get("/api/docs/")
    assert docs.status_code == 200
    assert b"swagger-ui" in docs.content
    assert b"//cdn" not in docs.content
