from django.urls import path

from evals.views import generation, management, operations

app_name = "evals"

urlpatterns = [
    path("settings/", generation.provider_settings, name="settings"),
    path("sets/<int:pk>/generate/", generation.generate, name="generate"),
    path("generations/<int:pk>/", generation.generation_detail, name="generation"),
    path("dashboard/", operations.dashboard, name="dashboard"),
    path("sets/<int:pk>/drift/", operations.drift, name="drift"),
    # Management (issue 7): lists, one version, history, the matrix, refinement.
    path("", management.eval_list, name="list"),
    path("sets/<int:pk>/versions/", management.versions, name="versions"),
    path("sets/<int:pk>/diff/", management.diff, name="diff"),
    path("sets/<int:pk>/matrix/", management.matrix, name="matrix"),
    path("sets/<int:pk>/export/", management.export_set, name="export_set"),
    path("<int:pk>/", management.detail, name="detail"),
    path("<int:pk>/activate/", management.activate, name="activate"),
    path("<int:pk>/archive/", management.archive, name="archive"),
    path("<int:pk>/restore/", management.restore, name="restore"),
    path("<int:pk>/test/", management.test_again, name="test"),
    path("<int:pk>/runs/<int:run_pk>/", management.run_progress, name="run_progress"),
    path("<int:pk>/edit/", management.edit, name="edit"),
    path("<int:pk>/export.py", management.export_script, name="export"),
    path("<int:pk>/traces/<int:trace_pk>/", management.cell, name="cell"),
    path("<int:pk>/refine/", management.refine, name="refine"),
    path("<int:pk>/compare/", management.compare, name="compare"),
    path("refinements/<int:pk>/", management.refinement_detail, name="refinement"),
]
