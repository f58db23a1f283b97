from django.urls import path

from evals.views import automation, collaboration, gallery, generation, operations, versions

app_name = "evals"

urlpatterns = [
    path("settings/", generation.provider_settings, name="settings"),
    path("sets/<int:pk>/generate/", generation.generate, name="generate"),
    path("sets/<int:pk>/judge/", generation.judge_template, name="judge_template"),
    path("generations/<int:pk>/", generation.generation_detail, name="generation"),
    path("dashboard/", operations.dashboard, name="dashboard"),
    path("sets/<int:pk>/drift/", operations.drift, name="drift"),
    path("sets/<int:pk>/resume/", operations.resume_continuous, name="resume_continuous"),
    # Management (issue 7): lists, one version, history, the matrix, refinement.
    path("", versions.eval_list, name="list"),
    path("sets/<int:pk>/versions/", versions.versions, name="versions"),
    path("sets/<int:pk>/diff/", versions.diff, name="diff"),
    path("sets/<int:pk>/matrix/", versions.matrix, name="matrix"),
    path("sets/<int:pk>/matrix.csv", versions.matrix_csv, name="matrix_csv"),
    path("sets/<int:pk>/export/", versions.export_set, name="export_set"),
    path("<int:pk>/", versions.detail, name="detail"),
    path("<int:pk>/activate/", versions.activate, name="activate"),
    path("<int:pk>/archive/", versions.archive, name="archive"),
    # Shadow A/B (issue 20).
    path("sets/<int:pk>/shadow/", versions.shadow_compare, name="shadow_compare"),
    path("<int:pk>/shadow/", versions.shadow, name="shadow"),
    path("<int:pk>/unshadow/", versions.unshadow, name="unshadow"),
    path("<int:pk>/promote/", versions.promote, name="promote"),
    path("automation/", automation.automation, name="automation"),
    # Collaboration (issue 20).
    path("<int:pk>/comments/", collaboration.comment_on_eval, name="comment"),
    path("traces/<int:pk>/comments/", collaboration.trace_comments, name="trace_comments"),
    path("sets/<int:pk>/activity/", collaboration.activity, name="activity"),
    # The gallery (issue 20).
    path("gallery/", gallery.gallery, name="gallery"),
    path("gallery/<int:pk>/", gallery.template_detail, name="template"),
    path("gallery/versions/<int:pk>/use/", gallery.use_template, name="use_template"),
    path("<int:pk>/publish/", gallery.publish, name="publish"),
    path("sets/<int:pk>/automation/", automation.set_threshold, name="set_threshold"),
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
