from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.factories import ArtistFactory, HostFactory
from treasury.models import User


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    """Factories hash every user's password; PBKDF2's deliberate slowness buys nothing here."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def other_host(db: None) -> User:
    return HostFactory()


@pytest.fixture
def second_artist(db: None) -> User:
    return ArtistFactory()


@pytest.fixture
def rule_body(host: User, artist: User) -> Callable[..., dict[str, Any]]:
    """A valid request body: 70% to the host, 30% to the artist, platform default terms."""

    def make(**overrides: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": "Main stage",
            "recipients": [
                {"recipient_id": str(host.pk), "share_bps": 7000},
                {"recipient_id": str(artist.pk), "share_bps": 3000},
            ],
        }
        body.update(overrides)
        return body

    return make
