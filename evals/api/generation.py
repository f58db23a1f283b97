"""API: start a generation, poll it, read evals and their executions."""

from rest_framework.views import APIView

from workspaces.access import WorkspaceScopedMixin


class GenerateApi(WorkspaceScopedMixin, APIView):
    pass


class GenerationDetailApi(WorkspaceScopedMixin, APIView):
    pass


class EvalListApi(WorkspaceScopedMixin, APIView):
    pass


class EvalDetailApi(WorkspaceScopedMixin, APIView):
    pass


class EvalExecutionListApi(WorkspaceScopedMixin, APIView):
    pass
