from django.contrib import admin
from django.contrib.auth.decorators import login_not_required
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from integrations.otlp import receiver as otlp_receiver
from iofold import monitoring, views
from iofold.lib.csp import allow_inline_styles
from workspaces import views as workspace_views

api_v1 = [
    path("", include("workspaces.api_urls")),
    path("", include("integrations.api_urls")),
    path("", include("traces.api_urls")),
    path("", include("evals.api_urls")),
]

handler404 = views.not_found

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", monitoring.metrics_view, name="metrics"),
    # The profile page shares allauth's prefix: /accounts/profile/ beside its own pages.
    path("accounts/", include("accounts.urls")),
    path("accounts/", include("allauth.urls")),
    path("admin/", admin.site.urls),
    path("w/", include("workspaces.urls")),
    path("w/<slug:slug>/integrations/", include("integrations.urls")),
    path("w/<slug:slug>/traces/", include("traces.urls")),
    path("w/<slug:slug>/evals/", include("evals.urls")),
    path("invitations/<str:token>/", workspace_views.accept_invitation, name="accept_invitation"),
    path("api/v1/", include(api_v1)),
    # OTLP/HTTP's fixed path (exporters append /v1/traces to OTEL_EXPORTER_OTLP_ENDPOINT);
    # an API view: it authenticates with a token itself and answers 401/403.
    path("v1/traces", otlp_receiver.receive, name="api-otlp-traces"),
    path("api/schema/", login_not_required(SpectacularAPIView.as_view()), name="api-schema"),
    path(
        "api/docs/",
        # The split view serves its start-up script as a file: no inline <script>.
        login_not_required(
            allow_inline_styles(SpectacularSwaggerSplitView.as_view(url_name="api-schema"))
        ),
        name="api-docs",
    ),
]
