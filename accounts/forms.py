from django import forms


class ProfileForm(forms.Form):
    # No max_length here: the service names the limit, and the form keeps the input.
    name = forms.CharField(required=False, help_text="Your display name, e.g. “Ada Lovelace”.")
