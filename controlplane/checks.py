"""System checks for `manage.py check --deploy`: production must not run on development defaults."""

from django.conf import settings
from django.core.checks import Tags, Warning, register


@register(Tags.security, deploy=True)
def signing_key_configured(app_configs, **kwargs):
    if settings.MLCP_SIGNING_KEY or settings.MLCP_SIGNING_KEY_PATH:
        return []
    return [Warning("mlcp would sign artifacts with a generated development key.",
                    hint="Set MLCP_SIGNING_KEY (or MLCP_SIGNING_KEY_FILE) to an EC private key in PEM.",
                    id="mlcp.W001")]


@register(Tags.database, deploy=True)
def production_database(app_configs, **kwargs):
    if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        return [Warning("mlcp is on its embedded SQLite database.",
                        hint="Set DATABASE_URL to PostgreSQL for production.", id="mlcp.W002")]
    return []
