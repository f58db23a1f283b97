from django.urls import path

from workspaces import api

urlpatterns = [
    path("workspaces/", api.WorkspaceListApi.as_view(), name="api-workspaces"),
    path("members/", api.MembershipListApi.as_view(), name="api-members"),
]
