from django.urls import path

from integrations import views, webhooks
from integrations.otlp import views as otlp_views

app_name = "integrations"

urlpatterns = [
    path("", views.integration_list, name="list"),
    path("new/", views.integration_create, name="create"),
    path("test/", views.check_new_connection, name="test_new"),
    path("openai-agents/", views.openai_agents_setup, name="openai_agents"),
    path("upload/", views.upload, name="upload"),
    path("uploads/<int:run_pk>/", views.upload_run, name="upload_run"),
    path("opentelemetry/", otlp_views.setup, name="otlp_setup"),
    path("<int:pk>/", views.integration_detail, name="detail"),
    path("<int:pk>/edit/", views.integration_edit, name="edit"),
    path("<int:pk>/test/", views.check_connection, name="test"),
    path("<int:pk>/edit/test/", views.check_edited_connection, name="test_edit"),
    path("<int:pk>/sync/", views.sync_now, name="sync"),
    path("<int:pk>/disable/", views.disable, name="disable"),
    path("<int:pk>/enable/", views.enable, name="enable"),
    path("<int:pk>/delete/", views.delete, name="delete"),
    path("<int:pk>/runs/<int:run_pk>/", views.run_progress, name="run_progress"),
    path("<int:pk>/openai-key/", views.openai_agents_key, name="openai_agents_key"),
    path("<int:pk>/webhook-secret/", webhooks.regenerate_secret, name="webhook_secret"),
]
