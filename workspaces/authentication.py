from django.db.models import OuterRef, Subquery
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from workspaces.models import ApiToken, Membership


class WorkspaceTokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer iof_...``: a token bound to one workspace.

    On success ``request.auth`` is the token, with ``granted_role``: its own role capped
    by its creator's current one.
    """

    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1").split()
        # The scheme is case-insensitive (RFC 9110, 11.1): "bearer" is "Bearer".
        if not header or header[0].lower() != self.keyword.lower():
            return None
        if len(header) != 2 or not header[1].startswith(ApiToken.PREFIX):
            raise exceptions.AuthenticationFailed("Malformed API token.")
        raw = header[1]
        lookup = raw[len(ApiToken.PREFIX) :][:12]
        # The creator's role is read on every request, not when the token was issued: a
        # token acts for its creator, so demoting or removing them takes effect at once.
        # It comes in the token's own query (one round trip per request, not two).
        creator_membership = Membership.objects.filter(
            workspace=OuterRef("workspace"), user=OuterRef("created_by")
        )
        token = (
            ApiToken.objects.active()
            .select_related("workspace", "created_by")
            .annotate(creator_role=Subquery(creator_membership.values("role")[:1]))
            .filter(lookup=lookup)
            .first()
        )
        if (
            token is None
            or not token.matches(raw)
            or token.created_by is None
            or token.creator_role is None
            or not token.created_by.is_active
            or token.workspace.deletion_requested_at is not None
        ):
            raise exceptions.AuthenticationFailed("Invalid or revoked API token.")
        token.granted_role = Membership.weaker_role(token.role, token.creator_role)
        # One write a minute is plenty to show "last used" without a write per request.
        now = timezone.now()
        if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.created_by, token

    def authenticate_header(self, request) -> str:
        return self.keyword


class WorkspaceTokenScheme(OpenApiAuthenticationExtension):
    """Describe the bearer token in the OpenAPI schema."""

    target_class = "workspaces.authentication.WorkspaceTokenAuthentication"
    name = "workspaceToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API token from the workspace's API tokens page (iof_…).",
        }
