from django.urls import path

from evals.views import generation, operations, versions

app_name = "evals"

urlpatterns = [
    path("settings/", generation.provider_settings, name="settings"),
    path("sets/<int:pk>/generate/", generation.generate, name="generate"),
    path("sets/<int:pk>/judge/", generation.judge_template, name="judge_template"),
    path("generations/<int:pk>/", generation.generation_detail, name="generation"),
    path("dashboard/", operations.dashboard, name="dashboard"),
    path("sets/<int:pk>/drift/", operations.drift, name="drift"),
    # Management (issue 7): lists, one version, history, the matrix, refinement.
    path("", versions.eval_list, name="list"),
    path("sets/<int:pk>/versions/", versions.versions, name="versions"),
    path("sets/<int:pk>/diff/", versions.diff, name="diff"),
    path("sets/<int:pk>/matrix/", versions.matrix, name="matrix"),
    path("sets/<int:pk>/export/", versions.export_set, name="export_set"),
    path("<int:pk>/", versions.detail, name="detail"),
    path("<int:pk>/activate/", versions.activate, name="activate"),
    path("<int:pk>/archive/", versions.archive, name="archive"),
    path("<int:pk>/restore/", versions.restore, name="restore"),
    path("<int:pk>/test/", versions.test_again, name="test"),
    path("<int:pk>/runs/<int:run_pk>/", versions.run_progress, name="run_progress"),
    path("<int:pk>/edit/", versions.edit, name="edit"),
    path("<int:pk>/export.py", versions.export_script, name="export"),
    path("<int:pk>/traces/<int:trace_pk>/", versions.cell, name="cell"),
    path("<int:pk>/refine/", versions.refine, name="refine"),
    path("<int:pk>/compare/", versions.compare, name="compare"),
    path("refinements/<int:pk>/", versions.refinement_detail, name="refinement"),
]
