"""Three one-column foreign-key indexes the composite indexes already serve: (account,
created_at) and (user, currency, created_at) on entries, (owner, currency) on accounts.
Every posting wrote them (two per entry, one per account update that could not stay HOT).

Only the indexes go: Django's own AlterField would drop and re-add the foreign keys, which
re-checks every entry under a lock, on a ledger that may hold millions.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

INDEXES = [
    ("ledger_accounts_owner_id_15be2bec", "ledger_accounts", "owner_id"),
    ("ledger_entries_account_id_07cf4f01", "ledger_entries", "account_id"),
    ("ledger_entries_user_id_c8780589", "ledger_entries", "user_id"),
]


class Migration(migrations.Migration):
    dependencies = [
        ("ledger", "0003_posting_function"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    f"DROP INDEX IF EXISTS {name};",
                    f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({column});",
                )
                for name, table, column in INDEXES
            ],
            state_operations=[
                migrations.AlterField(
                    model_name="ledgeraccount",
                    name="owner",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="ledger_accounts",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                migrations.AlterField(
                    model_name="ledgerentry",
                    name="account",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="entries",
                        to="ledger.ledgeraccount",
                    ),
                ),
                migrations.AlterField(
                    model_name="ledgerentry",
                    name="user",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
        )
    ]
