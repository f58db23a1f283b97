from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers
from rest_framework.permissions import IsAuthenticated

from workspaces.access import WorkspaceScopedMixin
from workspaces.models import ApiToken, Membership, Workspace


class WorkspaceOut(serializers.ModelSerializer):
    class Meta:
        model = Workspace
        fields = ["slug", "name", "created_at"]


class MembershipOut(serializers.ModelSerializer):
    email = serializers.EmailField(source="user.email")

    class Meta:
        model = Membership
        fields = ["id", "email", "role", "created_at"]


class WorkspaceListApi(generics.ListAPIView):
    """The workspaces this user (or this token) can reach."""

    serializer_class = WorkspaceOut
    permission_classes = [IsAuthenticated]

    def get_queryset(self):
        if isinstance(self.request.auth, ApiToken):
            return Workspace.objects.filter(pk=self.request.auth.workspace_id)
        return Workspace.objects.for_user(self.request.user)


@extend_schema(summary="Members of the workspace")
class MembershipListApi(WorkspaceScopedMixin, generics.ListAPIView):
    model = Membership
    serializer_class = MembershipOut

    def get_queryset(self):
        return super().get_queryset().select_related("user")
