from __future__ import annotations

import uuid
from typing import Any

import factory

from treasury.models import Role, User
from treasury.rls import system_context

DEFAULT_PASSWORD = "correct-horse-battery-staple"


class UserFactory(factory.django.DjangoModelFactory):
    """Users are written as the system: before a user exists, no context can see the row."""

    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}.{uuid.uuid4().hex[:8]}@example.test")
    role = Role.BUYER
    display_name = factory.Faker("name")

    @classmethod
    def _create(cls, model_class: type[User], *args: Any, **kwargs: Any) -> User:
        password = kwargs.pop("password", DEFAULT_PASSWORD)
        with system_context():
            return model_class.objects.create_user(*args, password=password, **kwargs)


class HostFactory(UserFactory):
    role = Role.HOST


class ArtistFactory(UserFactory):
    role = Role.ARTIST


class AdminFactory(UserFactory):
    role = Role.ADMIN
    is_staff = True
    is_superuser = True


class SplitRuleFactory(factory.django.DjangoModelFactory):
    """A split rule written by the service (validated and audited), as the system, so a
    test may give it any platform terms. Default: the owner, a host, gets 100%."""

    class Meta:
        model = "splits.SplitRule"

    owner = factory.SubFactory(HostFactory)
    name = factory.Sequence(lambda n: f"Split rule {n}")
    recipients = factory.LazyAttribute(
        lambda rule: [{"recipient_id": rule.owner.pk, "share_bps": 10_000}]
    )
    platform_fee_bps = 1000
    platform_fee_fixed_cents = 0
    fixed_fee_currency = None
    stripe_fee_bearer = "platform"
    dispute_loss_bearer = "platform"
    is_default = False

    @classmethod
    def _create(cls, model_class: type, *args: Any, **kwargs: Any) -> Any:
        from splits.services import create_split_rule

        with system_context():
            return create_split_rule(**kwargs)
