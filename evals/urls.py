from django.urls import path

from evals.views import generation, operations

app_name = "evals"

urlpatterns = [
    path("settings/", generation.provider_settings, name="settings"),
    path("sets/<int:pk>/generate/", generation.generate, name="generate"),
    path("generations/<int:pk>/", generation.generation_detail, name="generation"),
    path("dashboard/", operations.dashboard, name="dashboard"),
    path("sets/<int:pk>/drift/", operations.drift, name="drift"),
]
