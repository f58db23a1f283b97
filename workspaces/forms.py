from django import forms

from workspaces.models import Membership


class WorkspaceForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="Your team or product, e.g. “Support bot”.")


class InvitationForm(forms.Form):
    email = forms.EmailField()
    role = forms.ChoiceField(choices=Membership.Role.choices, initial=Membership.Role.MEMBER)


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Membership.Role.choices)


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What will use it, e.g. “CI pipeline”.")
    role = forms.ChoiceField(
        choices=[c for c in Membership.Role.choices if c[0] != Membership.Role.OWNER],
        initial=Membership.Role.MEMBER,
    )
