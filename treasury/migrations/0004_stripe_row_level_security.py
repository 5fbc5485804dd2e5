from django.db import migrations

from treasury.rls import CURRENT_USER_SQL, owner_reads_system_writes_sql, owner_rls_operation

# A charge is the buyer's payment and the host's sale: both may read it, only the system
# (webhook processing) and admins write it.
CHARGES_FORWARD, CHARGES_REVERSE = owner_reads_system_writes_sql(
    "stripe_charges",
    visible_to_user=f"buyer_id = {CURRENT_USER_SQL} OR host_id = {CURRENT_USER_SQL}",
)


class Migration(migrations.Migration):
    """Row-level security for the Stripe tables with user data.

    `stripe_event_processing` holds no user data (event ids, types, statuses), like
    dj-stripe's own tables: no policy, the runtime role uses it through its grants.
    """

    dependencies = [("treasury", "0003_stripe")]

    operations = [
        owner_rls_operation("stripe_accounts", owner_column="id"),
        migrations.RunSQL(CHARGES_FORWARD, CHARGES_REVERSE),
    ]
