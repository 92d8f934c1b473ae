# The "failed" outcome: an alert whose handling raised is recorded, not left to block its group (no schema change).

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('oncall', '0001_initial'),
    ]

    operations = [
        migrations.AlterField(
            model_name='handledalert',
            name='outcome',
            field=models.CharField(choices=[('acted', 'Acted'), ('dry_run', 'Dry Run'), ('skipped', 'Skipped'), ('refused', 'Refused'), ('annotated', 'Annotated'), ('resolved', 'Resolved'), ('ignored', 'Ignored'), ('failed', 'Failed')], max_length=16),
        ),
    ]
