from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from accounts.selectors import email_address_status
from iofold.lib.confirm import ask_first, confirmed
from iofold.lib.forms import form_status
from iofold.lib.shown_once import keep_to_show, take_to_show
from workspaces import services
from workspaces.access import workspace_view
from workspaces.exceptions import InvitationsRateLimited, WorkspaceError
from workspaces.forms import InvitationForm, RoleForm, TokenForm, WorkspaceForm
from workspaces.models import ApiToken, Invitation, Membership, Workspace


def workspace_list(request):
    """List the user's workspaces and create a new one."""
    form = WorkspaceForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        workspace = services.create_workspace_once(
            name=form.cleaned_data["name"], owner=request.user
        )
        messages.success(request, f"Workspace “{workspace.name}” created.")
        return redirect(workspace)
    memberships = Membership.objects.for_user(request.user).select_related("workspace")
    ctx = {"memberships": memberships, "form": form}
    return render(request, "workspaces/list.html", ctx, status=form_status(form))


@workspace_view
def workspace_home(request):
    """The workspace's landing page."""
    from iofold.composition import my_queue

    ctx = {
        "checklist": _checklist(request.workspace),
        "my_queue": my_queue(request.workspace, request.user),
    }
    return render(request, "workspaces/home.html", ctx)


def _checklist(workspace: Workspace) -> list[dict]:
    """Return the onboarding steps, which iofold.composition lists for every app."""
    # Deferred: the composition layer sits above the apps and imports them all.
    from iofold.composition import onboarding_steps

    return onboarding_steps(workspace)


@workspace_view
def members(request):
    """Members, their roles and pending invitations."""
    return _members_page(request, InvitationForm())


def _members_page(request, form: InvitationForm, status: int = 200):
    members = list(Membership.objects.for_workspace(request.workspace).select_related("user"))
    owners = sum(m.role == Membership.Role.OWNER for m in members)
    ctx = {
        "members": members,
        # The only owner cannot leave; the page says how instead of offering the button.
        "can_leave": request.membership.role != Membership.Role.OWNER or owners > 1,
        "invitations": Invitation.objects.for_workspace(request.workspace).pending(),
        "form": form,
        "roles": services.assignable_roles(request.membership),
    }
    return render(request, "workspaces/members.html", ctx, status=status)


@workspace_view(manage=True)
def invite(request):
    if request.method != "POST":
        # A refused invitation's page stays at this address: reloading it from the address
        # bar (a GET) leads back to the members page instead of a blank "method not allowed".
        return redirect("workspaces:members", slug=request.workspace.slug)
    form = InvitationForm(request.POST)
    if form.is_valid():
        try:
            services.invite_member(
                workspace=request.workspace,
                email=form.cleaned_data["email"],
                role=form.cleaned_data["role"],
                invited_by=request.user,
                base_url=request.build_absolute_uri("/"),
                by=request.membership,
            )
        except InvitationsRateLimited as exc:
            messages.error(request, exc.message)
            response = _members_page(request, form, status=429)
            response["Retry-After"] = str(exc.retry_after)
            return response
        except WorkspaceError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, f"Invitation sent to {form.cleaned_data['email']}.")
            return redirect("workspaces:members", slug=request.workspace.slug)
    else:
        messages.error(request, _first_error(form))
    # The page again, with what was typed: a typo should not mean typing it all again.
    return _members_page(request, form, status=400)


def _first_error(form) -> str:
    """The form's first error, named by its field: these forms post from a page that
    redirects back, so the message is all the user sees."""
    field, errors = next(iter(form.errors.items()))
    named = form.fields.get(field)  # None for an error of the whole form
    return f"{named.label or field.capitalize()}: {errors[0]}" if named else errors[0]


@require_http_methods(["GET", "POST"])  # GET: the question only
@workspace_view(manage=True)
def cancel_invitation(request, pk: int):
    invitation = get_object_or_404(Invitation.objects.for_workspace(request.workspace), pk=pk)
    if not confirmed(request):
        return ask_first(
            request,
            question=f"Cancel the invitation for {invitation.email}?",
            detail="Its link stops working; you can invite them again later.",
            button="Cancel invitation",
            back_url=_members_url(request),
        )
    invitation.delete()
    messages.success(request, f"Invitation for {invitation.email} cancelled.")
    return redirect("workspaces:members", slug=request.workspace.slug)


def _members_url(request) -> str:
    return reverse("workspaces:members", args=[request.workspace.slug])


@require_POST
@workspace_view(manage=True)
def change_role(request, pk: int):
    membership = get_object_or_404(Membership.objects.for_workspace(request.workspace), pk=pk)
    form = RoleForm(request.POST)
    if form.is_valid():
        try:
            services.change_role(
                membership=membership, role=form.cleaned_data["role"], by=request.membership
            )
            messages.success(request, f"{membership.user} is now {membership.get_role_display()}.")
        except WorkspaceError as exc:
            messages.error(request, exc.message)
    else:
        messages.error(request, _first_error(form))
    return redirect("workspaces:members", slug=request.workspace.slug)


@require_http_methods(["GET", "POST"])  # GET: the question only
@workspace_view(manage=True)
def remove_member(request, pk: int):
    membership = get_object_or_404(Membership.objects.for_workspace(request.workspace), pk=pk)
    if not confirmed(request):
        return ask_first(
            request,
            question=f"Remove {membership.user.email}?",
            detail="They lose access to this workspace at once, and the API tokens they "
            "made here stop working.",
            button="Remove",
            back_url=_members_url(request),
        )
    try:
        services.remove_member(membership=membership, by=request.membership)
        messages.success(request, f"{membership.user} was removed.")
    except WorkspaceError as exc:
        messages.error(request, exc.message)
    if membership.user == request.user and membership.pk is None:
        return redirect("home")
    return redirect("workspaces:members", slug=request.workspace.slug)


@require_http_methods(["GET", "POST"])  # GET: the question only
@workspace_view(own_membership=True)
def leave(request):
    if not confirmed(request):
        return ask_first(
            request,
            question=f"Leave {request.workspace.name}?",
            detail="You will need a new invitation to come back.",
            button="Leave",
            back_url=_members_url(request),
        )
    try:
        services.leave_workspace(membership=request.membership)
    except WorkspaceError as exc:
        messages.error(request, exc.message)
        return redirect("workspaces:members", slug=request.workspace.slug)
    messages.success(request, f"You left “{request.workspace.name}”.")
    return redirect("home")


@never_cache  # it shows a new token's secret
@workspace_view(manage=True)
def tokens(request):
    """API tokens: create (the secret is shown once), list, revoke."""
    form = TokenForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                _, raw = services.issue_token(
                    workspace=request.workspace,
                    name=form.cleaned_data["name"],
                    role=form.cleaned_data["role"],
                    created_by=request.user,
                )
            except WorkspaceError as exc:
                messages.error(request, exc.message)
            else:
                # A refresh of the page showing the secret must not make a second token.
                keep_to_show(request, _new_token_key(request.workspace), raw)
                return redirect("workspaces:tokens", slug=request.workspace.slug)
        status = 400
    ctx = {
        "tokens": ApiToken.objects.for_workspace(request.workspace).select_related("created_by"),
        "form": form,
        "new_token": take_to_show(request, _new_token_key(request.workspace)),
    }
    return render(request, "workspaces/tokens.html", ctx, status=status)


def _new_token_key(workspace: Workspace) -> str:
    return f"api_token:{workspace.pk}"


@require_http_methods(["GET", "POST"])  # GET: the question only
@workspace_view(manage=True)
def revoke_token(request, pk: int):
    token = get_object_or_404(ApiToken.objects.for_workspace(request.workspace), pk=pk)
    if not confirmed(request):
        return ask_first(
            request,
            question=f"Revoke {token.name}?",
            detail="Whatever uses it stops working; this cannot be undone.",
            button="Revoke",
            back_url=reverse("workspaces:tokens", args=[request.workspace.slug]),
        )
    services.revoke_token(token=token)
    messages.success(request, f"Token “{token.name}” revoked.")
    return redirect("workspaces:tokens", slug=request.workspace.slug)


@login_not_required
def accept_invitation(request, token: str):
    """Show an invitation and, on POST, join its workspace.

    Anyone with the link sees whom it is from, so an invitee without an account yet is
    offered sign-up and log-in links that bring them back here. Only a user who has
    verified the invited address may join; anyone else is told whom it is for.
    """
    template = "workspaces/invitation.html"
    try:
        invitation = services.find_invitation(token=token)
    except WorkspaceError as exc:
        if request.user.is_authenticated:
            # Joined already, e.g. on confirming the address at sign-up: the link leads in.
            joined = services.workspace_joined_through(token=token, user=request.user)
            if joined is not None:
                return redirect(joined)
        return render(request, template, {"error": exc.message}, status=404)
    ctx = {"invitation": invitation}
    if not request.user.is_authenticated:
        if request.method == "POST":
            return redirect_to_login(request.get_full_path())
        return render(request, template, ctx)
    ctx["address"] = email_address_status(request.user, invitation.email)
    if ctx["address"] != "verified":
        return render(request, template, ctx, status=403)
    if request.method == "POST":
        try:
            membership = services.accept_invitation(token=token, user=request.user)
        except WorkspaceError as exc:
            messages.error(request, exc.message)
            return redirect("home")
        messages.success(request, f"Welcome to {membership.workspace.name}.")
        return redirect(membership.workspace)
    return render(request, template, ctx)


@workspace_view(manage=True)
def workspace_settings(request):
    """Rename the workspace, or (owners) delete it."""
    form = WorkspaceForm(request.POST or None, initial={"name": request.workspace.name})
    if request.method == "POST" and form.is_valid():
        services.rename_workspace(workspace=request.workspace, name=form.cleaned_data["name"])
        messages.success(request, "Workspace renamed.")
        return redirect("workspaces:settings", slug=request.workspace.slug)
    return render(request, "workspaces/settings.html", {"form": form}, status=form_status(form))


@require_POST
@workspace_view(manage=True)
def delete_workspace(request):
    if request.membership.role != Membership.Role.OWNER:
        raise PermissionDenied("Only owners can delete a workspace.")
    if request.POST.get("confirm") != request.workspace.slug:
        messages.error(request, "Type the workspace's slug to confirm deletion.")
        return redirect("workspaces:settings", slug=request.workspace.slug)
    services.request_workspace_deletion(workspace=request.workspace)
    messages.success(request, f"“{request.workspace.name}” is being deleted.")
    return redirect("home")
