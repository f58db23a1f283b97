from django.urls import path

from evals.api import continuous, drift, generation, matrix, pause, shadow, versions

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
    path("eval-sets/<int:pk>/drift/", drift.EvalSetDriftApi.as_view(), name="api-eval-set-drift"),
    path(
        "eval-sets/<int:pk>/continuous/",
        pause.EvalSetContinuousApi.as_view(),
        name="api-eval-set-continuous",
    ),
    path(
        "eval-sets/<int:pk>/continuous/resume/",
        pause.EvalSetResumeApi.as_view(),
        name="api-eval-set-resume",
    ),
    path("evals/<int:pk>/run", continuous.EvalBatchRunApi.as_view(), name="api-eval-run"),
    # Management (issue 7): lineage, state changes, edits, tests, diffs, exports, matrix.
    path(
        "eval-sets/<int:pk>/versions/",
        versions.EvalSetVersionsApi.as_view(),
        name="api-eval-set-versions",
    ),
    path("eval-sets/<int:pk>/diff/", versions.EvalSetDiffApi.as_view(), name="api-eval-set-diff"),
    path(
        "eval-sets/<int:pk>/export/",
        versions.EvalSetExportApi.as_view(),
        name="api-eval-set-export",
    ),
    path(
        "eval-sets/<int:pk>/matrix/",
        matrix.EvalSetMatrixApi.as_view(),
        name="api-eval-set-matrix",
    ),
    path("evals/<int:pk>/activate/", versions.EvalActivateApi.as_view(), name="api-eval-activate"),
    path("evals/<int:pk>/archive/", versions.EvalArchiveApi.as_view(), name="api-eval-archive"),
    path("evals/<int:pk>/restore/", versions.EvalRestoreApi.as_view(), name="api-eval-restore"),
    path("evals/<int:pk>/edit/", versions.EvalEditApi.as_view(), name="api-eval-edit"),
    path("evals/<int:pk>/test/", versions.EvalTestApi.as_view(), name="api-eval-test"),
    path("evals/<int:pk>/refine/", versions.EvalRefineApi.as_view(), name="api-eval-refine"),
    path("evals/<int:pk>/export.py", versions.EvalExportApi.as_view(), name="api-eval-export"),
    path(
        "evals/<int:pk>/traces/<int:trace_pk>/",
        matrix.EvalCellApi.as_view(),
        name="api-eval-cell",
    ),
    path("eval-runs/<int:pk>/", versions.EvalRunDetailApi.as_view(), name="api-eval-run-detail"),
    # Shadow A/B (issue 20).
    path(
        "eval-sets/<int:pk>/shadow/", shadow.EvalSetShadowApi.as_view(), name="api-eval-set-shadow"
    ),
    path("evals/<int:pk>/shadow/", shadow.EvalShadowApi.as_view(), name="api-eval-shadow"),
    path("evals/<int:pk>/promote/", shadow.EvalPromoteApi.as_view(), name="api-eval-promote"),
]
