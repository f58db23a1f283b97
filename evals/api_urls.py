from django.urls import path

from evals.api import continuous, generation

urlpatterns = [
    path(
        "eval-sets/<int:pk>/generate/",
        generation.GenerateApi.as_view(),
        name="api-eval-set-generate",
    ),
    path("generations/<int:pk>/", generation.GenerationDetailApi.as_view(), name="api-generation"),
    path("evals/", generation.EvalListApi.as_view(), name="api-evals"),
    path("evals/<int:pk>/", generation.EvalDetailApi.as_view(), name="api-eval"),
    path(
        "evals/<int:pk>/executions/",
        generation.EvalExecutionListApi.as_view(),
        name="api-eval-executions",
    ),
    path("evals/<int:pk>/run", continuous.EvalBatchRunApi.as_view(), name="api-eval-run"),
]
