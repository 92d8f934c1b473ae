# When an upload last claimed a blob: the sweep of unreferenced blobs leaves recently claimed ones alone.

import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('registry', '0004_blob_verification'),
    ]

    operations = [
        migrations.AddField(
            model_name='blob',
            name='claimed_at',
            field=models.DateTimeField(default=django.utils.timezone.now,
                                       help_text='when an upload last stored or reused these bytes'),
        ),
    ]
