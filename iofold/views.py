from django.contrib.auth.decorators import login_not_required
from django.http import JsonResponse
from django.shortcuts import redirect
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from django.views.defaults import page_not_found

from iofold.health import check_broker, check_database
from workspaces.models import Workspace


@login_not_required
@never_cache
@require_GET
def healthz(request):
    """Report database and broker state: 200 when both answer, 503 otherwise."""
    db_ok, db_detail = check_database()
    broker_ok, broker_detail = check_broker()
    body = {
        "status": "ok" if db_ok and broker_ok else "unavailable",
        "database": db_detail,
        "broker": broker_detail,
    }
    return JsonResponse(body, status=200 if db_ok and broker_ok else 503)


def home(request):
    """Send the user to their last workspace, or to the list to create one."""
    workspaces = Workspace.objects.for_user(request.user)
    last = workspaces.filter(slug=request.session.get("workspace_slug")).first()
    workspace = last or workspaces.order_by("name").first()
    if workspace is None:
        return redirect("workspaces:list")
    return redirect("workspaces:home", slug=workspace.slug)


# Paths whose callers are programs: they read every error as JSON.
API_PREFIXES = ("/api/", "/v1/")


def not_found(request, exception):
    """Answer an unknown API path in JSON, as every API error is; pages get iofold's page."""
    if request.path.startswith(API_PREFIXES):
        return JsonResponse({"detail": "Not found."}, status=404)
    return page_not_found(request, exception)
