from django.urls import path

from workspaces import views

app_name = "workspaces"

urlpatterns = [
    path("", views.workspace_list, name="list"),
    path("<slug:slug>/", views.workspace_home, name="home"),
    path("<slug:slug>/members/", views.members, name="members"),
    path("<slug:slug>/members/invite/", views.invite, name="invite"),
    path("<slug:slug>/members/<int:pk>/role/", views.change_role, name="change_role"),
    path("<slug:slug>/members/<int:pk>/remove/", views.remove_member, name="remove_member"),
    path("<slug:slug>/leave/", views.leave, name="leave"),
    path(
        "<slug:slug>/invitations/<int:pk>/cancel/",
        views.cancel_invitation,
        name="cancel_invitation",
    ),
    path("<slug:slug>/settings/", views.workspace_settings, name="settings"),
    path("<slug:slug>/delete/", views.delete_workspace, name="delete"),
    path("<slug:slug>/tokens/", views.tokens, name="tokens"),
    path("<slug:slug>/tokens/<int:pk>/revoke/", views.revoke_token, name="revoke_token"),
]
