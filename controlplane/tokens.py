"""API tokens: a key minted and shown once, checked on every request, revocable, optionally expiring.

A key reads `mlcp_<prefix>_<secret>`. The prefix (48 random bits, hex) finds
the row and names the token in the admin and logs; the secret (256 random
bits) makes the key unguessable. Only the SHA-256 of the whole key is stored:
a slow password hash protects secrets people choose, and a random 256-bit
secret needs none, so checking a request costs one hash.
"""

import hashlib
import hmac
import secrets
from datetime import timedelta

from django.db.models import QuerySet
from django.utils import timezone
from rest_framework import authentication
from rest_framework.exceptions import AuthenticationFailed

from controlplane.models import ApiToken

KEY_SCHEME = "mlcp"
_PREFIX_BYTES = 6
_SECRET_BYTES = 32
# Compared against when no row has the key's prefix, so that miss costs what a wrong secret costs.
_NO_SUCH_DIGEST = "0" * 64


def mint_token(user, *, expires_in: timedelta | None = None) -> str:
    """A new token for `user`; returns its key, which exists nowhere else afterwards."""
    prefix = secrets.token_hex(_PREFIX_BYTES)
    key = f"{KEY_SCHEME}_{prefix}_{secrets.token_urlsafe(_SECRET_BYTES)}"
    expires_at = timezone.now() + expires_in if expires_in is not None else None
    ApiToken.objects.create(user=user, prefix=prefix, digest=_digest(key), expires_at=expires_at)
    return key


def prefix_of(key: str) -> str | None:
    """The lookup prefix of a well-formed key, else None."""
    scheme, _, rest = key.partition("_")
    prefix, separator, secret = rest.partition("_")
    if scheme != KEY_SCHEME or not separator or not secret or len(prefix) != 2 * _PREFIX_BYTES:
        return None
    return prefix


def revoke_tokens(tokens: QuerySet[ApiToken]) -> int:
    """Revokes those of `tokens` not revoked yet; returns how many. Rows stay, for the record."""
    return tokens.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiTokenAuthentication(authentication.TokenAuthentication):
    """`Authorization: Token <key>`, checked against the stored digest, expiry and revocation."""

    def authenticate_credentials(self, key):
        prefix = prefix_of(key)
        try:
            # The prefix is unique: one indexed lookup, the user joined (every request needs it).
            token = ApiToken.objects.select_related("user").get(prefix=prefix) if prefix else None
        except ApiToken.DoesNotExist:
            token = None
        if not hmac.compare_digest(token.digest if token else _NO_SUCH_DIGEST, _digest(key)) or token is None:
            raise AuthenticationFailed("Invalid token.")
        # Only the holder of the whole key learns why it stopped working.
        if token.revoked_at is not None:
            raise AuthenticationFailed("This token was revoked; ask an admin for a new one.")
        if not token.is_usable():
            raise AuthenticationFailed("This token expired; ask an admin for a new one.")
        if not token.user.is_active:
            raise AuthenticationFailed("User inactive or deleted.")
        return token.user, token
