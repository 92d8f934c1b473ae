"""API tokens, stored as a digest: the database never holds a key that works.

A key is shown once, when it is minted (`controlplane.tokens`); what stays is
its non-secret prefix, to find the row and to name the token in the admin and
logs, and the SHA-256 of the whole key, to check it.
"""

from django.conf import settings
from django.db import models
from django.utils import timezone


class ApiToken(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    prefix = models.CharField(max_length=16, unique=True,
                              help_text="names the token: the key's part after mlcp_; not a secret")
    digest = models.CharField(max_length=64, help_text="SHA-256 of the whole key, hex")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="empty: never expires")
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API token"

    def __str__(self):
        return f"{self.prefix}… ({self.user})"

    def is_usable(self, now=None) -> bool:
        now = now or timezone.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)
