"""The one place a request's workspace is resolved, for the UI and the API alike."""

from functools import wraps

from django.core.exceptions import PermissionDenied
from django.core.validators import slug_re
from django.http import Http404
from rest_framework import exceptions as drf_exceptions
from rest_framework import permissions

from workspaces.memberships import user_memberships
from workspaces.models import ApiToken, Membership

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def get_workspace_for_user(request, slug: str, *, write: bool = False, manage: bool = False):
    """Return ``(workspace, membership)``: 404 for non-members, 403 for a too-weak role.

    All of the user's memberships are read at once (from the cache after the first page),
    in the workspace switcher's order: the page's switcher lists them
    (``request.user_workspaces``, see ``workspaces.context_processors``).
    """
    memberships = user_memberships(request.user)
    request.user_workspaces = [m.workspace for m in memberships]
    membership = next((m for m in memberships if m.workspace.slug == slug), None)
    if membership is None:
        raise Http404("No such workspace")
    # Set before the role check, so a refusal's page keeps the member's workspace around it.
    request.workspace, request.membership = membership.workspace, membership
    check_role(membership.role, write=write, manage=manage)
    return membership.workspace, membership


def check_role(role: str, *, write: bool = False, manage: bool = False) -> None:
    """Raise ``PermissionDenied`` when the role may not write or manage members."""
    if manage and role not in (Membership.Role.OWNER, Membership.Role.ADMIN):
        raise PermissionDenied("Only owners and admins can do this.")
    if write and role == Membership.Role.VIEWER:
        raise PermissionDenied("Viewers cannot change anything in this workspace.")


def workspace_view(
    view=None, *, manage: bool = False, own_membership: bool = False, writers_only: bool = False
):
    """Resolve ``slug`` to ``request.workspace``; unsafe methods need a writing role.

    ``own_membership`` marks actions on the user's own membership (leaving), which any
    member may take, viewers included. ``writers_only`` marks a page that is a form to
    change something (an edit page): a viewer who types its address is refused the page
    itself, with the refusal page saying why, instead of shown a Save whose POST is
    refused and loses what was typed.
    """

    def decorator(func):
        @wraps(func)
        def wrapper(request, slug, *args, **kwargs):
            unsafe = request.method not in SAFE_METHODS or writers_only
            write = unsafe and not own_membership
            workspace, membership = get_workspace_for_user(
                request, slug, write=write, manage=manage and write
            )
            if manage and not write and not membership.can_manage:
                raise PermissionDenied("Only owners and admins can do this.")
            request.workspace = workspace
            request.membership = membership
            # Remember the last workspace, writing the session only when it changes.
            if request.session.get("workspace_slug") != workspace.slug:
                request.session["workspace_slug"] = workspace.slug
            return func(request, *args, **kwargs)

        return wrapper

    return decorator(view) if view is not None else decorator


def resolve_api_workspace(request):
    """Return ``(workspace, role)`` for an API request.

    A token is bound to its workspace and grants no more than its creator's current
    role (see ``WorkspaceTokenAuthentication``). A session names one with the ``X-Workspace``
    header or ``?workspace=<slug>``; with neither, the user's only workspace is used.
    """
    token = request.auth if isinstance(request.auth, ApiToken) else None
    if token is not None:
        return token.workspace, token.granted_role
    slug = request.headers.get("X-Workspace") or request.query_params.get("workspace")
    memberships = Membership.objects.for_user(request.user).select_related("workspace")
    if slug and not slug_re.match(slug):
        # Checked before the query: a NUL in it fails in PostgreSQL (a 500).
        raise drf_exceptions.ValidationError({"workspace": ["Not a workspace slug."]})
    if slug:
        membership = memberships.filter(workspace__slug=slug).first()
        if membership is None:
            raise Http404("No such workspace")
        return membership.workspace, membership.role
    memberships = list(memberships[:2])
    if len(memberships) != 1:
        raise drf_exceptions.ValidationError(
            {"detail": "Name the workspace with the X-Workspace header or ?workspace=<slug>."}
        )
    return memberships[0].workspace, memberships[0].role


class WorkspacePermission(permissions.BasePermission):
    """Resolve the workspace onto the request; viewers may only read."""

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        workspace, role = resolve_api_workspace(request)
        request.workspace = workspace
        request.workspace_role = role
        write = request.method not in SAFE_METHODS
        check_role(role, write=write, manage=write and getattr(view, "manage_only", False))
        return True


class WorkspaceScopedMixin:
    """DRF views whose every object comes from ``model.objects.for_workspace(...)``."""

    permission_classes = [WorkspacePermission]
    model: type | None = None

    def get_queryset(self):
        return self.model.objects.for_workspace(self.request.workspace)
