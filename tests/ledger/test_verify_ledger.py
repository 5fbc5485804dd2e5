from __future__ import annotations

import uuid

import pytest
from django.core.management import CommandError, call_command

from ledger.chart import platform_code, user_code
from ledger.services import credit, debit, post_transaction
from tests.factories import HostFactory


def _post_sale(host, key: str) -> None:
    post_transaction(
        idempotency_key=key,
        event_source="test",
        entries=[
            debit(platform_code("stripe_balance", "USD"), 1000, "USD"),
            credit(user_code(host.pk, "payable", "USD"), 900, "USD"),
            credit(platform_code("fee_revenue", "USD"), 100, "USD"),
        ],
    )


@pytest.mark.django_db
def test_verify_ledger_is_clean_on_a_clean_ledger(host, capsys):
    _post_sale(host, "verify:clean")
    call_command("verify_ledger")
    assert "ledger verified: no differences" in capsys.readouterr().out


@pytest.mark.usefixtures("committed_db")
def test_verify_ledger_reports_a_tampered_balance(owner_connection, capsys):
    """Only the owner can still change a balance without posting (the runtime role cannot:
    test_database_guarantees); verify_ledger sees it."""
    host = HostFactory()
    _post_sale(host, f"verify:tamper:{uuid.uuid4()}")
    code = user_code(host.pk, "payable", "USD")
    tamper = "UPDATE ledger_accounts SET balance_cents = balance_cents + %s WHERE code = %s"
    with owner_connection.cursor() as cur:
        cur.execute(tamper, [7, code])
    owner_connection.commit()
    try:
        with pytest.raises(CommandError, match="does not verify"):
            call_command("verify_ledger")
        out = capsys.readouterr().out
        assert f"balance: {code}#0: expected 900, found 907" in out
        assert "equation" in out
    finally:
        with owner_connection.cursor() as cur:  # put the books back for the other tests
            cur.execute(tamper, [-7, code])
        owner_connection.commit()


@pytest.mark.usefixtures("committed_db")
def test_verify_ledger_reports_an_entry_edited_behind_the_triggers(owner_connection, capsys):
    """The owner deliberately bypasses the append-only trigger (replica mode) to forge an
    entry; verify_ledger must see both the unbalanced transaction and the wrong balance."""
    host = HostFactory()
    key = f"verify:forged:{uuid.uuid4()}"
    _post_sale(host, key)
    with owner_connection.cursor() as cur:
        cur.execute("SET session_replication_role = replica")
        cur.execute(
            "UPDATE ledger_entries SET amount_cents = amount_cents + 5 WHERE type = 'credit'"
            " AND user_id = %s RETURNING id",
            [host.pk],
        )
        (entry_id,) = cur.fetchone()
    owner_connection.commit()
    try:
        with pytest.raises(CommandError):
            call_command("verify_ledger")
        out = capsys.readouterr().out
        assert "unbalanced_transaction" in out
        assert f"user:{host.pk}:payable:usd#0: expected 905, found 900" in out
    finally:
        with owner_connection.cursor() as cur:  # put the books back for the other tests
            cur.execute("SET session_replication_role = replica")
            cur.execute(
                "UPDATE ledger_entries SET amount_cents = amount_cents - 5 WHERE id = %s",
                [entry_id],
            )
        owner_connection.commit()
    call_command("verify_ledger")
