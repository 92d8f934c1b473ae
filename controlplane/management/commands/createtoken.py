"""`manage.py createtoken USER --role ROLE [--expires-in DAYS] [--rotate]`: a user with that role, a new API token."""

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError

from controlplane.accounts import issue_token
from controlplane.roles import Role


class Command(BaseCommand):
    help = ("Create USER if needed, give it ROLE, and print a new API token (for CI and scripts). "
            "The token is shown only now: mlcp keeps a digest of it.")

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--role", required=True, choices=[r.value for r in Role])
        parser.add_argument("--rotate", action="store_true", help="revoke the user's earlier tokens")
        parser.add_argument("--expires-in", type=float, metavar="DAYS", help="the token stops working after DAYS")

    def handle(self, username, role, rotate, expires_in, **options):
        lifetime = timedelta(days=expires_in) if expires_in is not None else None
        try:
            token = issue_token(username, Role(role), rotate=rotate, expires_in=lifetime)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(token)
