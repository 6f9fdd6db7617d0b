"""Factories for the program's data. Ledger state is built through the services, never with a factory."""

import factory
from django.utils import timezone

from accounts.models import User
from loyalty.models import EarnRule, EarnRuleKind, Member, Order, Reward, Store
from loyalty.services.members import member_create
from tiers.models import Tier


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"staff{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@store.example")
    is_staff = True
    password = factory.django.Password("pass-for-tests-1")


class ManagerFactory(UserFactory):
    username = factory.Sequence(lambda n: f"manager{n}")
    is_superuser = True


class MemberFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Member

    email = factory.Sequence(lambda n: f"member{n}@shopper.example")
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    signed_up_at = factory.LazyFunction(timezone.now)

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        # Members are made the product's way: in the tier their (zero) lifetime points give.
        return member_create(**kwargs)


class TierFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tier
        django_get_or_create = ("name",)

    name = "Bronze"
    threshold = 0


class RewardFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Reward

    name = factory.Sequence(lambda n: f"Reward {n}")
    points_cost = 500
    coupon_prefix = "TEST"


class EarnRuleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = EarnRule

    name = "Place an order"
    kind = EarnRuleKind.ORDER
    points_per_currency_unit = 1


class OrderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Order

    store = Store.SHOPIFY
    store_order_id = factory.Sequence(lambda n: str(5_000_000_000_000 + n))
    member = factory.SubFactory(MemberFactory)
    email = factory.LazyAttribute(lambda o: o.member.email if o.member else "guest@shopper.example")
    total = 100
    currency = "USD"
    financial_status = "paid"
    placed_at = factory.LazyFunction(timezone.now)
