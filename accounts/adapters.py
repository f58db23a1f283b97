from allauth.account.adapter import DefaultAccountAdapter


class AccountAdapter(DefaultAccountAdapter):
    """Give every new user a workspace of their own at sign-up."""

    def save_user(self, request, user, form, commit=True):
        user = super().save_user(request, user, form, commit=commit)
        if commit:
            from workspaces.services import create_personal_workspace

            create_personal_workspace(user=user)
        return user
