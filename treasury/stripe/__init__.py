"""Stripe: the client, webhook intake with exactly-once processing, Connect Express accounts,
and charges posted into the ledger. Its models live in the `treasury` app (treasury/models.py
imports them), its migrations in treasury/migrations."""
