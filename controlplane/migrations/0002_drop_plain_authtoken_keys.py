"""DRF authtoken keys were stored in plain text; mlcp no longer accepts them, so none is kept.

Holders get a new key with `manage.py createtoken USER --role ROLE`.
"""

from django.db import migrations


def delete_plain_keys(apps, schema_editor):
    apps.get_model("authtoken", "Token").objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [
        ("controlplane", "0001_api_token"),
        ("authtoken", "0004_alter_tokenproxy_options"),
    ]

    operations = [migrations.RunPython(delete_plain_keys, migrations.RunPython.noop)]
