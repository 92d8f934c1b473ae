"""`manage.py createtoken USER --role ROLE`: a user with that role and its API token."""

from django.core.management.base import BaseCommand, CommandError

from controlplane.accounts import issue_token
from controlplane.roles import Role


class Command(BaseCommand):
    help = "Create USER if needed, give it ROLE, and print its API token (for CI and scripts)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--role", required=True, choices=[r.value for r in Role])
        parser.add_argument("--rotate", action="store_true", help="replace an existing token")

    def handle(self, username, role, rotate, **options):
        try:
            token = issue_token(username, Role(role), rotate=rotate)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(token)
