# Blob verification state: when the stored bytes last hashed to the digest, and when they were found altered.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('registry', '0003_governance'),
    ]

    operations = [
        migrations.AddField(
            model_name='blob',
            name='verified_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='blob',
            name='tampered_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='blob',
            name='tampered_digest',
            field=models.CharField(blank=True, help_text='what the altered bytes hashed to', max_length=64),
        ),
    ]
