"""Generation pages: provider settings, starting a generation and following its progress."""

from django.http import HttpResponse

from workspaces.access import workspace_view


@workspace_view
def provider_settings(request):
    """Show and change the workspace's generation provider."""
    return HttpResponse("Provider settings are being built.", status=501)


@workspace_view
def generate(request, pk: int):
    """Start generating an eval for the eval set."""
    return HttpResponse("Generation is being built.", status=501)


@workspace_view
def generation_detail(request, pk: int):
    """Show a generation's progress, then its result."""
    return HttpResponse("Generation is being built.", status=501)
