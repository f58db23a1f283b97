from django.urls import path

from evals.api import continuous, generation, management

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
    # Management (issue 7): lineage, state changes, edits, tests, diffs, exports, matrix.
    path(
        "eval-sets/<int:pk>/versions/",
        management.EvalSetVersionsApi.as_view(),
        name="api-eval-set-versions",
    ),
    path("eval-sets/<int:pk>/diff/", management.EvalSetDiffApi.as_view(), name="api-eval-set-diff"),
    path(
        "eval-sets/<int:pk>/export/",
        management.EvalSetExportApi.as_view(),
        name="api-eval-set-export",
    ),
    path(
        "eval-sets/<int:pk>/matrix/",
        management.EvalSetMatrixApi.as_view(),
        name="api-eval-set-matrix",
    ),
    path(
        "evals/<int:pk>/activate/", management.EvalActivateApi.as_view(), name="api-eval-activate"
    ),
    path("evals/<int:pk>/archive/", management.EvalArchiveApi.as_view(), name="api-eval-archive"),
    path("evals/<int:pk>/restore/", management.EvalRestoreApi.as_view(), name="api-eval-restore"),
    path("evals/<int:pk>/edit/", management.EvalEditApi.as_view(), name="api-eval-edit"),
    path("evals/<int:pk>/test/", management.EvalTestApi.as_view(), name="api-eval-test"),
    path("evals/<int:pk>/refine/", management.EvalRefineApi.as_view(), name="api-eval-refine"),
    path("evals/<int:pk>/export.py", management.EvalExportApi.as_view(), name="api-eval-export"),
    path(
        "evals/<int:pk>/traces/<int:trace_pk>/",
        management.EvalCellApi.as_view(),
        name="api-eval-cell",
    ),
    path("eval-runs/<int:pk>/", management.EvalRunDetailApi.as_view(), name="api-eval-run-detail"),
]
