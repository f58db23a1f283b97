from django.urls import path

from traces import agents_api, api

urlpatterns = [
    path("traces/", api.TracesApi.as_view(), name="api-traces"),
    # The slashless POST that clients and CI scripts already use (docs/ci.md).
    path("traces", api.TraceIngestAliasApi.as_view(), name="api-traces-ingest"),
    path("traces/<int:pk>/", api.TraceDetailApi.as_view(), name="api-trace"),
    path("conversations/", api.ConversationsApi.as_view(), name="api-conversations"),
    path("conversations/<int:pk>/", api.ConversationDetailApi.as_view(), name="api-conversation"),
    path(
        "conversations/<int:pk>/labels/",
        api.ConversationLabelsApi.as_view(),
        name="api-conversation-labels",
    ),
    path(
        "conversations/<int:pk>/runs/",
        api.ConversationRunsApi.as_view(),
        name="api-conversation-runs",
    ),
    path("eval-sets/", api.EvalSetListApi.as_view(), name="api-eval-sets"),
    path("eval-sets/<int:pk>/", api.EvalSetDetailApi.as_view(), name="api-eval-set"),
    path("eval-sets/<int:pk>/traces/", api.EvalSetTracesApi.as_view(), name="api-eval-set-traces"),
    # The OpenAI Agents SDK exporter's endpoint (its default is OpenAI's /v1/traces/ingest).
    path(
        "openai/traces/ingest",
        agents_api.OpenAIAgentsIngestApi.as_view(),
        name="api-openai-agents-ingest",
    ),
    path("deletions/", api.DeletionsApi.as_view(), name="api-deletions"),
    path("deletions/<int:pk>/", api.DeletionDetailApi.as_view(), name="api-deletion"),
    path("feedback/", api.FeedbackListApi.as_view(), name="api-feedback"),
    path("feedback/<int:pk>/", api.FeedbackDetailApi.as_view(), name="api-feedback-detail"),
]
