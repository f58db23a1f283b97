from django.urls import path

from traces import views

app_name = "traces"

urlpatterns = [
    path("", views.trace_list, name="list"),
    path("<int:pk>/", views.trace_detail, name="detail"),
    path("conversations/", views.conversation_list, name="conversation_list"),
    path("conversations/<int:pk>/", views.conversation_detail, name="conversation_detail"),
    path(
        "conversations/<int:pk>/turns/<int:trace_pk>/steps/",
        views.conversation_turn_steps,
        name="conversation_turn_steps",
    ),
    path("add-to-eval-set/", views.add_to_eval_set, name="add_to_eval_set"),
    path("assign/", views.bulk_assign, name="bulk_assign"),
    path("delete/", views.delete_selected, name="delete_selected"),
    path("deletions/<int:run_pk>/", views.deletion, name="deletion"),
    path("deletions/<int:run_pk>/resume/", views.deletion_resume, name="deletion_resume"),
    path("review/", views.review_start, name="review_start"),
    path("eval-sets/", views.evalset_list, name="evalset_list"),
    path("eval-sets/new/", views.evalset_create, name="evalset_create"),
    path("eval-sets/<int:pk>/", views.evalset_detail, name="evalset_detail"),
    path("eval-sets/<int:pk>/edit/", views.evalset_edit, name="evalset_edit"),
    path("eval-sets/<int:pk>/archive/", views.evalset_archive, name="evalset_archive"),
    path("eval-sets/<int:pk>/restore/", views.evalset_restore, name="evalset_restore"),
    path("eval-sets/<int:pk>/delete/", views.evalset_delete, name="evalset_delete"),
    path(
        "eval-sets/<int:pk>/traces/<int:trace_pk>/remove/",
        views.evalset_remove_trace,
        name="evalset_remove_trace",
    ),
    path("eval-sets/<int:pk>/labels/<int:label_pk>/", views.label_edit, name="label_edit"),
    path(
        "eval-sets/<int:pk>/labels/<int:label_pk>/edit/",
        views.label_edit_form,
        name="label_edit_form",
    ),
    path(
        "eval-sets/<int:pk>/labels/<int:label_pk>/remove/",
        views.label_remove,
        name="label_remove",
    ),
    path("eval-sets/<int:pk>/import/", views.evalset_import, name="evalset_import"),
    path(
        "eval-sets/<int:pk>/import/scores/",
        views.evalset_import_scores,
        name="evalset_import_scores",
    ),
    path(
        "eval-sets/<int:pk>/import/scores/<int:run_pk>/",
        views.evalset_import_scores_run,
        name="evalset_import_scores_run",
    ),
    path("eval-sets/<int:pk>/assign/", views.evalset_assign, name="evalset_assign"),
    path(
        "eval-sets/<int:pk>/traces/<int:trace_pk>/assign/",
        views.trace_assign,
        name="trace_assign",
    ),
    path("eval-sets/<int:pk>/review/", views.review, name="review"),
    path("eval-sets/<int:pk>/review/undo/", views.review_undo, name="review_undo"),
    path("eval-sets/<int:pk>/review/unskip/", views.review_unskip, name="review_unskip"),
    path(
        "eval-sets/<int:pk>/review/<int:trace_pk>/label/", views.review_label, name="review_label"
    ),
    path("eval-sets/<int:pk>/review/<int:trace_pk>/skip/", views.review_skip, name="review_skip"),
]
