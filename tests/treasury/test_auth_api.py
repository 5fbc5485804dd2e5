from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from tests.factories import DEFAULT_PASSWORD, AdminFactory, UserFactory
from treasury.api import token_pair
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


# --- endpoints that run without an access token ---
# The request's RLS context is empty there (treasury/middleware.py): every read of `users`
# they need has to say under whose context it runs, or RLS silently hides the row.


def test_refresh_without_an_access_header_gives_a_new_access_token_for_that_user():
    """What every client does once its access token expired: no Authorization header."""
    user = UserFactory()
    tokens = token_pair(user)
    response = APIClient().post("/api/auth/refresh", {"refresh": tokens["refresh"]}, format="json")
    assert response.status_code == 200, response.content
    access = response.json()["access"]
    assert AccessToken(access)["user_id"] == str(user.pk)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    assert client.get("/api/auth/me").json()["id"] == str(user.pk)


def test_an_admin_refreshes_without_an_access_header_too():
    admin = AdminFactory()
    response = APIClient().post(
        "/api/auth/refresh", {"refresh": token_pair(admin)["refresh"]}, format="json"
    )
    assert response.status_code == 200, response.content


def test_refresh_for_a_deactivated_user_is_a_401():
    user = UserFactory()
    refresh = token_pair(user)["refresh"]
    with system_context():
        User.objects.filter(pk=user.pk).update(is_active=False)
    response = APIClient().post("/api/auth/refresh", {"refresh": refresh}, format="json")
    assert_error(response, 401, "no_active_account")


def test_refresh_for_an_erased_user_is_a_401(client_for):
    user = UserFactory()
    refresh = token_pair(user)["refresh"]
    assert client_for(user).delete("/api/auth/me").status_code == 204
    response = APIClient().post("/api/auth/refresh", {"refresh": refresh}, format="json")
    assert_error(response, 401, "no_active_account")


def test_refresh_for_a_user_that_does_not_exist_is_a_401():
    ghost = User(pk=uuid.uuid4(), email="ghost@example.test")
    refresh = str(RefreshToken.for_user(ghost))
    response = APIClient().post("/api/auth/refresh", {"refresh": refresh}, format="json")
    assert_error(response, 401, "no_active_account")


def test_refresh_with_a_user_id_that_is_not_a_uuid_is_a_401():
    token = RefreshToken.for_user(UserFactory())
    token["user_id"] = "not-a-uuid"
    response = APIClient().post("/api/auth/refresh", {"refresh": str(token)}, format="json")
    assert_error(response, 401, "no_active_account")


@pytest.mark.parametrize("refresh", ["", "garbage", "a.b.c"])
def test_a_bad_refresh_token_is_a_4xx_in_the_error_shape(refresh):
    response = APIClient().post("/api/auth/refresh", {"refresh": refresh}, format="json")
    assert response.status_code in (400, 401), response.content
    assert set(response.json()) == {"error"}


def test_an_access_token_is_not_a_refresh_token():
    access = token_pair(UserFactory())["access"]
    response = APIClient().post("/api/auth/refresh", {"refresh": access}, format="json")
    assert_error(response, 401, "token_not_valid")


def test_a_refresh_under_another_users_access_header_refreshes_the_tokens_owner(client_for):
    """The refresh token says whose it is; the access header of someone else changes nothing."""
    owner, other = UserFactory(), UserFactory()
    refresh = token_pair(owner)["refresh"]
    response = client_for(other).post("/api/auth/refresh", {"refresh": refresh}, format="json")
    assert response.status_code == 200, response.content
    assert AccessToken(response.json()["access"])["user_id"] == str(owner.pk)


def test_login_without_credentials_finds_the_user_and_a_deactivated_one_is_refused():
    user = UserFactory()
    client = APIClient()
    ok = client.post(
        "/api/auth/login", {"email": user.email, "password": DEFAULT_PASSWORD}, format="json"
    )
    assert ok.status_code == 200, ok.content
    with system_context():
        User.objects.filter(pk=user.pk).update(is_active=False)
    refused = client.post(
        "/api/auth/login", {"email": user.email, "password": DEFAULT_PASSWORD}, format="json"
    )
    assert_error(refused, 401, "no_active_account")


def test_an_access_token_of_a_deleted_or_deactivated_user_is_a_401():
    user = UserFactory()
    access = token_pair(user)["access"]
    with system_context():
        User.objects.filter(pk=user.pk).update(is_active=False)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    assert client.get("/api/auth/me").status_code == 401
    ghost = str(AccessToken.for_user(User(pk=uuid.uuid4())))
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {ghost}")
    assert client.get("/api/auth/me").status_code == 401


# Every /api route a caller reaches without an access token, and the test that runs it so:
# a new one must be added here, with a test that it works under the empty RLS context.
ANONYMOUS_API_ROUTES = {
    "auth-signup": "test_signup_login_me_and_refresh, test_bad_signups_say_which_field_is_wrong",
    "auth-login": "test_login_without_credentials_finds_the_user_and_a_deactivated_one_is_refused",
    "auth-refresh": "test_refresh_without_an_access_header_gives_a_new_access_token_for_that_user",
    "admin-health": "tests/treasury/test_health.py",
    "schema": "test_docs_and_schema_are_served_offline",
    "docs": "test_docs_and_schema_are_served_offline",
    "stripe-webhook": "tests/stripe/test_webhook_intake.py (the signature authenticates)",
}


def anonymous_api_routes() -> set[str]:
    """Names of /api routes whose view lets a caller without credentials in: DRF views with
    no permission class or AllowAny, and plain Django views (they check nothing)."""
    from django.urls import URLPattern, URLResolver, get_resolver
    from rest_framework.permissions import AllowAny
    from rest_framework.views import APIView

    def walk(patterns, prefix=""):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern):
                yield prefix + str(pattern.pattern), pattern

    found = set()
    for route, pattern in walk(get_resolver().url_patterns):
        if not route.lstrip("^").startswith("api/"):
            continue
        view = getattr(pattern.callback, "view_class", None) or getattr(
            pattern.callback, "cls", None
        )
        if view is None or not issubclass(view, APIView):
            found.add(pattern.name)
            continue
        permissions = list(view.permission_classes)
        if not permissions or any(issubclass(p, AllowAny) for p in permissions):
            found.add(pattern.name)
    return found


def test_every_api_route_without_an_access_token_is_known_and_tested():
    assert anonymous_api_routes() == set(ANONYMOUS_API_ROUTES)


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
