"""The risk score becomes integer basis points (10,000 = certain), as every number on a
payout row is an integer; existing scores (0 to 1) are carried over exactly enough: x 10,000,
rounded."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("payouts", "0003_schedules")]

    operations = [
        migrations.RemoveConstraint(model_name="payout", name="payouts_risk_not_negative"),
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    "ALTER TABLE payouts ALTER COLUMN risk_score TYPE integer"
                    " USING round(risk_score * 10000)::integer",
                    reverse_sql="ALTER TABLE payouts ALTER COLUMN risk_score TYPE double precision"
                    " USING risk_score / 10000.0",
                )
            ],
            state_operations=[
                migrations.AlterField(
                    model_name="payout",
                    name="risk_score",
                    field=models.IntegerField(default=0),
                )
            ],
        ),
        migrations.AddConstraint(
            model_name="payout",
            constraint=models.CheckConstraint(
                condition=models.Q(("risk_score__gte", 0), ("risk_score__lte", 10000)),
                name="payouts_risk_score_bps",
            ),
        ),
    ]
