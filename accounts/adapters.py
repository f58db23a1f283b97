from types import SimpleNamespace
from urllib.parse import urlsplit

from allauth.account.adapter import DefaultAccountAdapter
from django.conf import settings
from django.contrib import messages

from iofold.lib.links import email_link


class AccountAdapter(DefaultAccountAdapter):
    """Give every new user a workspace: the ones that invited them, or one of their own."""

    def save_user(self, request, user, form, commit=True):
        user = super().save_user(request, user, form, commit=commit)
        if commit:
            from workspaces.services import create_personal_workspace, has_open_invitation

            # An invitee joins the inviting workspace once their address is verified
            # (confirm_email below), rather than starting in an empty one of their own.
            if not has_open_invitation(email=user.email):
                create_personal_workspace(user=user)
        return user

    def confirm_email(self, request, email_address) -> bool:
        confirmed = super().confirm_email(request, email_address)
        if confirmed:
            from workspaces.services import join_invited_workspaces

            joined = join_invited_workspaces(user=email_address.user, email=email_address.email)
            for membership in joined:
                messages.success(request, f"Welcome to {membership.workspace.name}.")
            if joined:
                # The home page then opens the workspace the invitation was for.
                request.session["workspace_slug"] = joined[0].workspace.slug
        return confirmed

    def send_mail(self, template_prefix: str, email: str, context: dict) -> None:
        # allauth builds its links (confirmation, password reset, sign-up) from the request's
        # host, which behind a proxy may be internal: SITE_URL's, like every email's.
        context = {
            key: email_link(value) if key.endswith("_url") and isinstance(value, str) else value
            for key, value in context.items()
        }
        if settings.SITE_URL:
            # The host its templates sign with ("Thank you for using <host>").
            host = urlsplit(settings.SITE_URL).netloc
            context["current_site"] = SimpleNamespace(name=host, domain=host)
        super().send_mail(template_prefix, email, context)
