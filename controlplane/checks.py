"""System checks: production must not run on development defaults (`check --deploy`), and webhooks must
have what they need to be sent safely (every `check`)."""

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError

from registry.models import RegisteredModel
from rollouts.notifications import allowed_private_networks, new_secret_command, signing_secret


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


@register(Tags.security)
def webhook_settings(app_configs, **kwargs):
    problems = []
    try:
        allowed_private_networks()
    except ImproperlyConfigured as exc:
        problems.append(Error(str(exc), id="mlcp.E010"))
    if settings.MLCP_WEBHOOK_SECRET:
        try:
            signing_secret()
        except ImproperlyConfigured as exc:
            problems.append(Error(str(exc), hint=f"Make one: {new_secret_command()}", id="mlcp.E011"))
    elif names := _models_with_webhooks():
        problems.append(Warning(
            f"Models have webhooks ({', '.join(names)}) but MLCP_WEBHOOK_SECRET is not set: none is sent.",
            hint=f"Set MLCP_WEBHOOK_SECRET and share it with the receivers. Make one: {new_secret_command()}",
            id="mlcp.W010"))
    return problems


def _models_with_webhooks() -> list[str]:
    try:
        return list(RegisteredModel.objects.exclude(notification_webhook="").values_list("name", flat=True)[:5])
    except DatabaseError:
        return []  # no database yet (before migrate, or a build step): nothing to warn about
