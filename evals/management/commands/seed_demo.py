from allauth.account.models import EmailAddress
from django.core.management.base import BaseCommand
from django.db import transaction

from accounts.models import User
from workspaces.models import Membership, Workspace
from workspaces.services import create_workspace

DEMO_EMAIL = "demo@iofold.local"
DEMO_PASSWORD = "iofold-demo"  # noqa: S105  (a published demo login, local only)


class Command(BaseCommand):
    help = "Create the demo user and workspace with sample traces, labels and an eval (idempotent)."

    @transaction.atomic
    def handle(self, *args, **options):
        user = User.objects.filter(email=DEMO_EMAIL).first()
        if user is None:
            user = User.objects.create_user(DEMO_EMAIL, DEMO_PASSWORD, name="Demo")
        EmailAddress.objects.update_or_create(
            user=user, email=DEMO_EMAIL, defaults={"verified": True, "primary": True}
        )
        workspace = Workspace.objects.filter(is_demo=True, memberships__user=user).first()
        if workspace is None:
            workspace = create_workspace(name="Demo: support agent", owner=user, is_demo=True)
        Membership.objects.get_or_create(
            workspace=workspace, user=user, defaults={"role": Membership.Role.OWNER}
        )
        self.seed(workspace, user)
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo workspace ready. Log in as {DEMO_EMAIL} with password {DEMO_PASSWORD}"
            )
        )

    def seed(self, workspace: Workspace, user: User) -> None:
        """Fill the demo workspace: traces, an eval set with labels, a generated eval."""
        from evals.demo import seed_demo_eval
        from integrations.demo import create_demo_traces
        from traces.demo import seed_demo_labels

        create_demo_traces(workspace=workspace)
        eval_set = seed_demo_labels(workspace, [user], traces=30, labels=30)
        eval = seed_demo_eval(eval_set, user=user)
        if eval is None:
            self.stdout.write(self.style.WARNING("The demo eval could not be generated."))
        else:
            agreement = "—" if eval.agreement is None else f"{eval.agreement:.0%}"
            self.stdout.write(f"Demo eval: {eval_set.name} v{eval.version}, agreement {agreement}")
