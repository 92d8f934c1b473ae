"""`manage.py revoketoken PREFIX_OR_KEY ...` or `--user USER`: API tokens that stop working now."""

from django.core.management.base import BaseCommand, CommandError

from controlplane.models import ApiToken
from controlplane.tokens import prefix_of, revoke_tokens


class Command(BaseCommand):
    help = "Revoke API tokens, named by their prefix (as the admin lists them) or whole key, or all of a user's."

    def add_arguments(self, parser):
        parser.add_argument("tokens", nargs="*", metavar="PREFIX_OR_KEY")
        parser.add_argument("--user", help="revoke every token of this user")

    def handle(self, tokens, user, **options):
        if not tokens and not user:
            raise CommandError("name the tokens to revoke (prefix or key), or --user USER")
        chosen = ApiToken.objects.none()
        if tokens:
            prefixes = [prefix_of(token) or token for token in tokens]
            unknown = sorted(set(prefixes) - set(ApiToken.objects.filter(prefix__in=prefixes)
                                                  .values_list("prefix", flat=True)))
            if unknown:
                raise CommandError(f"no token has the prefix {', '.join(unknown)}")
            chosen |= ApiToken.objects.filter(prefix__in=prefixes)
        if user:
            if not ApiToken.objects.filter(user__username=user).exists():
                raise CommandError(f"{user!r} has no token")
            chosen |= ApiToken.objects.filter(user__username=user)
        self.stdout.write(f"revoked {revoke_tokens(chosen)} token(s)")
