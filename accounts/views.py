from django.contrib import messages
from django.shortcuts import redirect, render

from accounts import services
from accounts.exceptions import AccountError
from accounts.forms import ProfileForm
from iofold.lib.forms import form_status


def profile(request):
    """The user's name (editable), with their email and links to allauth's account pages."""
    form = ProfileForm(request.POST or None, initial={"name": request.user.name})
    if request.method == "POST" and form.is_valid():
        try:
            services.update_profile(user=request.user, name=form.cleaned_data["name"])
        except AccountError as exc:
            form.add_error("name", exc.message)
        else:
            messages.success(request, "Profile saved.")
            return redirect("accounts:profile")
    return render(request, "accounts/profile.html", {"form": form}, status=form_status(form))
