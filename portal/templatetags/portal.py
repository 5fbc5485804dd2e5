from __future__ import annotations

from django import template

from portal.selectors import ENTRY_KINDS
from treasury.money_format import format_bps, format_money

register = template.Library()


@register.filter
def money(amount_cents: int | None, currency: str) -> str:
    """{{ cents|money:currency }}"""
    if amount_cents is None:
        return ""
    return format_money(int(amount_cents), currency)


@register.filter
def percent(bps: int) -> str:
    return f"{format_bps(int(bps))}%"


@register.filter
def entry_kind(event_source: str) -> str:
    return ENTRY_KINDS.get(event_source, event_source.replace("_", " ").capitalize())
