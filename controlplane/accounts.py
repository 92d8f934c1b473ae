"""Users, role groups and API tokens."""

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction

from controlplane.roles import Role
from controlplane.tokens import mint_token, revoke_tokens


def ensure_role_groups() -> None:
    for role in Role:
        Group.objects.get_or_create(name=role.value)


@transaction.atomic
def issue_token(username: str, role: Role, *, rotate: bool = False, expires_in: timedelta | None = None) -> str:
    """Creates `username` if needed, gives it `role`, and returns a new API key, shown this once.

    Only a digest is kept, so an earlier key cannot be returned again: each
    call mints another. `rotate` revokes the user's earlier tokens; without
    it they keep working, so a key can be replaced before the old one goes.
    """
    if not username or len(username) > 150:
        raise ValueError("a username is 1 to 150 characters")
    if expires_in is not None and expires_in <= timedelta(0):
        raise ValueError("a token's lifetime must be positive")
    ensure_role_groups()
    user, _ = get_user_model().objects.get_or_create(username=username)
    user.groups.add(Group.objects.get(name=role.value))
    if role == Role.ADMIN:
        user.is_staff = True
        user.save(update_fields=["is_staff"])
    if rotate:
        revoke_tokens(user.api_tokens.all())
    return mint_token(user, expires_in=expires_in)
