from django.urls import path

from integrations import api, webhooks
from integrations.otlp import api as otlp_api

urlpatterns = [
    path("integrations/", api.IntegrationListApi.as_view(), name="api-integrations"),
    path("integrations/otlp/", otlp_api.OtlpSourceApi.as_view(), name="api-otlp-source"),
    path(
        "integrations/openai-agents/",
        api.OpenAIAgentsSourceApi.as_view(),
        name="api-openai-agents-source",
    ),
    path("integrations/<int:pk>/", api.IntegrationDetailApi.as_view(), name="api-integration"),
    path(
        "integrations/<int:pk>/test/", api.IntegrationTestApi.as_view(), name="api-integration-test"
    ),
    path(
        "integrations/<int:pk>/sync/", api.IntegrationSyncApi.as_view(), name="api-integration-sync"
    ),
    path(
        "integrations/<int:pk>/runs/", api.IntegrationRunsApi.as_view(), name="api-integration-runs"
    ),
    # Authenticated by the integration's HMAC signature, not by a session or token.
    path("integrations/<int:pk>/webhook", webhooks.receive, name="api-integration-webhook"),
    path("sync-runs/<int:pk>/", api.SyncRunDetailApi.as_view(), name="api-sync-run"),
]
