"""Traces (list, ingest, read), eval sets and feedback under /api/v1/."""

import io

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import generics, serializers, status
from rest_framework.exceptions import ParseError, UnsupportedMediaType, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from integrations.constants import MAX_API_TRACES
from integrations.otlp.decode import OtlpRequestError, check_json_values, decompress
from integrations.uploads import ingest_objects
from iofold.api import (
    LOCATION,
    BodyIn,
    IdField,
    JSONParser,
    PayloadTooLarge,
    WindowOut,
    choice_param,
    id_param,
    page_limit,
    window_params,
)
from iofold.pipeline import admit_traces
from traces import deletions, selectors, services
from traces.constants import MAX_CRITERIA_CHARS
from traces.conversations import conversation_dict
from traces.exceptions import LabelNotYours, TraceError
from traces.filters import LABEL_STATES, TraceFilters, read_conversation_filters
from traces.models import Conversation, DeletionRun, EvalSet, Feedback, Trace
from workspaces.access import WorkspaceScopedMixin

# --- serializers ------------------------------------------------------------------------


IngestOut = inline_serializer(
    "IngestOut",
    {
        "received": serializers.IntegerField(),
        "created": serializers.IntegerField(),
        "updated": serializers.IntegerField(),
        "unchanged": serializers.IntegerField(),
        "failed": serializers.IntegerField(),
        "errors": serializers.ListField(child=serializers.DictField()),
        "errors_truncated": serializers.BooleanField(),
    },
)


def _read_page(params, unread: dict[str, str]) -> tuple[str | None, int]:
    """Read a cursor-paged list's ``cursor`` and ``limit``; refuse (400) naming every
    parameter that did not read, the list's own filters in ``unread`` among them."""
    cursor = params.get("cursor")
    if cursor and selectors.decode_cursor(cursor) is None:
        unread["cursor"] = "Not a next_cursor this API returned."
    limit = page_limit(params, unread)
    if unread:
        raise ValidationError(unread)
    return cursor, limit


class LabelCountsOut(serializers.Serializer):
    positive = serializers.IntegerField()
    negative = serializers.IntegerField()
    neutral = serializers.IntegerField()


class TraceOut(serializers.ModelSerializer):
    label_counts = serializers.SerializerMethodField()

    class Meta:
        model = Trace
        fields = [
            "id",
            "external_id",
            "name",
            "timestamp",
            "source",
            "integration",
            "tags",
            "has_error",
            "step_count",
            "tool_call_count",
            "latency_ms",
            "cost",
            "label_counts",
        ]

    @extend_schema_field(LabelCountsOut)
    def get_label_counts(self, trace) -> dict:
        counts = getattr(trace, "label_counts", {}) or {}
        return {rating: counts.get(rating, 0) for rating in Feedback.Rating.values}


class TraceDetailOut(TraceOut):
    """A trace with its data, whose ``steps`` hold one window (``steps_page``)."""

    data = serializers.SerializerMethodField()
    steps_page = serializers.SerializerMethodField()

    class Meta(TraceOut.Meta):
        fields = [*TraceOut.Meta.fields, "data", "steps_page"]

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_data(self, trace) -> dict:
        return self.context["data"]

    @extend_schema_field(WindowOut)
    def get_steps_page(self, trace) -> dict:
        return WindowOut(self.context["window"]).data


class TracePageOut(serializers.Serializer):
    results = TraceOut(many=True)
    next_cursor = serializers.CharField(allow_null=True)


class EvalSetSummaryOut(serializers.Serializer):
    labelled_traces = serializers.IntegerField()
    # Good or bad majorities: what counts toward target_labels (ready, remaining).
    decided_traces = serializers.IntegerField(source="decided")
    positive = serializers.IntegerField()
    negative = serializers.IntegerField()
    neutral = serializers.IntegerField()
    ties = serializers.IntegerField(source="ties_count")
    reviewers = serializers.IntegerField()
    reviewer_agreement = serializers.FloatField(source="agreement", allow_null=True)
    ready = serializers.BooleanField()
    remaining = serializers.IntegerField()
    eval_count = serializers.IntegerField(allow_null=True)
    best_agreement = serializers.FloatField(allow_null=True)


class EvalSetOut(serializers.ModelSerializer):
    summary = serializers.SerializerMethodField()

    class Meta:
        model = EvalSet
        fields = [
            "id",
            "name",
            "criteria",
            "target_labels",
            "source_kind",
            "saved_filter",
            "score_to_langfuse",
            "unit",
            "conversation_idle_minutes",
            "archived_at",
            "created_at",
            "updated_at",
            "summary",
        ]

    @staticmethod
    def _summary(eval_set, summaries):
        return summaries.get(eval_set.pk) or selectors.eval_set_summary(eval_set)

    @extend_schema_field(EvalSetSummaryOut)
    def get_summary(self, eval_set) -> dict:
        summary = self._summary(eval_set, self.context.get("summaries", {}))
        return EvalSetSummaryOut(summary).data


class SavedFilterIn(serializers.Serializer):
    q = serializers.CharField(required=False, allow_blank=True, max_length=200)
    name = serializers.CharField(required=False, allow_blank=True, max_length=255)
    tag = serializers.CharField(required=False, allow_blank=True, max_length=100)
    has_error = serializers.BooleanField(required=False, allow_null=True, default=None)
    source = serializers.ChoiceField(choices=Trace.Source.choices, required=False)
    integration = IdField(required=False, allow_null=True)
    date_from = serializers.DateField(required=False, allow_null=True)
    date_to = serializers.DateField(required=False, allow_null=True)


class EvalSetIn(BodyIn):
    name = serializers.CharField(max_length=200)
    criteria = serializers.CharField(max_length=MAX_CRITERIA_CHARS)
    target_labels = serializers.IntegerField(min_value=1, max_value=10_000, default=10)
    source_kind = serializers.ChoiceField(
        choices=EvalSet.SourceKind.choices, default=EvalSet.SourceKind.MANUAL
    )
    saved_filter = SavedFilterIn(required=False)
    trace_ids = serializers.ListField(
        child=IdField(), required=False, default=list, max_length=10_000
    )
    score_to_langfuse = serializers.BooleanField(default=False)
    unit = serializers.ChoiceField(choices=EvalSet.Unit.choices, default=EvalSet.Unit.TRACE)
    conversation_idle_minutes = serializers.IntegerField(
        min_value=1, max_value=7 * 24 * 60, default=30
    )


class EvalSetUpdateIn(BodyIn):
    name = serializers.CharField(max_length=200, required=False)
    criteria = serializers.CharField(required=False, max_length=MAX_CRITERIA_CHARS)
    target_labels = serializers.IntegerField(min_value=1, max_value=10_000, required=False)
    source_kind = serializers.ChoiceField(choices=EvalSet.SourceKind.choices, required=False)
    saved_filter = SavedFilterIn(required=False)
    score_to_langfuse = serializers.BooleanField(required=False)
    unit = serializers.ChoiceField(choices=EvalSet.Unit.choices, required=False)
    conversation_idle_minutes = serializers.IntegerField(
        min_value=1, max_value=7 * 24 * 60, required=False
    )


class EvalSetTracesIn(BodyIn):
    trace_ids = serializers.ListField(child=IdField(), min_length=1, max_length=10_000)


# The API keeps its stored values; the help names them in the words every page uses.
RATING_HELP = "The label: positive is good, negative is bad, or neutral."


class FeedbackIn(BodyIn):
    eval_set = IdField()
    trace = IdField()
    rating = serializers.ChoiceField(choices=Feedback.Rating.choices, help_text=RATING_HELP)
    note = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000)


class FeedbackUpdateIn(BodyIn):
    rating = serializers.ChoiceField(
        choices=Feedback.Rating.choices, required=False, help_text=RATING_HELP
    )
    note = serializers.CharField(required=False, allow_blank=True, max_length=5000)


class FeedbackOut(serializers.ModelSerializer):
    user = serializers.EmailField(source="user.email", read_only=True)

    class Meta:
        model = Feedback
        fields = ["id", "eval_set", "trace", "user", "rating", "note", "created_at", "updated_at"]


# --- traces -----------------------------------------------------------------------------

TRACE_FILTER_PARAMS = [
    OpenApiParameter("q", str, description="Free text in the trace's input and output."),
    OpenApiParameter("name", str, description="Exact trace name."),
    OpenApiParameter("tag", str),
    OpenApiParameter("has_error", bool),
    OpenApiParameter("label", str, enum=list(LABEL_STATES)),
    OpenApiParameter("source", str, enum=Trace.Source.values),
    OpenApiParameter("integration", int),
    OpenApiParameter("date_from", OpenApiTypes.DATE),
    OpenApiParameter("date_to", OpenApiTypes.DATE, description="Inclusive."),
    OpenApiParameter("cursor", str, description="``next_cursor`` of the previous page."),
    OpenApiParameter("limit", int, description="Page size, at most 200 (default 50)."),
]


INGEST_RESPONSES = {
    201: IngestOut,
    200: IngestOut,
    400: IngestOut,
    413: OpenApiTypes.OBJECT,
    429: OpenApiTypes.OBJECT,
}


class CompressedJSONParser(JSONParser):
    """The API's JSON parser, also taking bodies sent with ``Content-Encoding: gzip`` or
    ``deflate``: a batch of 1,000 traces shrinks several times over a slow link. The
    inflated size is bounded as the OTLP receiver bounds it, and the values in it as an
    uncompressed body's (``DATA_UPLOAD_MAX_MEMORY_SIZE``) are."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = parser_context["request"].headers.get("Content-Encoding", "")
        if encoding.strip().lower() not in ("", "identity"):
            try:
                inflated = decompress(stream.read(), encoding)
                check_json_values(inflated, as_sent_limit=settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
                stream = io.BytesIO(inflated)
            except OtlpRequestError as exc:
                if exc.status == 415:
                    raise UnsupportedMediaType(encoding, detail=exc.message) from None
                if exc.status == 413:
                    raise PayloadTooLarge(exc.message) from None
                raise ParseError(exc.message) from None
        return super().parse(stream, media_type, parser_context)


class TracesApi(WorkspaceScopedMixin, APIView):
    """The traces collection: list them, or ingest new ones without a platform."""

    model = Trace
    parser_classes = [CompressedJSONParser]

    @extend_schema(
        summary="List traces, newest first",
        operation_id="traces_list",
        parameters=TRACE_FILTER_PARAMS,
        responses=TracePageOut,
    )
    def get(self, request):
        params = request.query_params
        filters = TraceFilters.from_data(params)
        cursor, limit = _read_page(params, filters.unread(params))
        page = selectors.trace_page(
            workspace=request.workspace, filters=filters, cursor=cursor, limit=limit
        )
        return Response(
            {"results": TraceOut(page.traces, many=True).data, "next_cursor": page.next_cursor}
        )

    @extend_schema(
        operation_id="traces_ingest",
        request=OpenApiTypes.OBJECT,
        responses=INGEST_RESPONSES,
        summary="Ingest traces (normalised shape or Langfuse export), validated per trace",
    )
    def post(self, request):
        """Ingest one trace, a list, or {"traces": [...]}; each is validated on its own."""
        items = _posted_traces(request)
        admit_traces(workspace=request.workspace, count=len(items))
        report = ingest_objects(workspace=request.workspace, source="api", items=enumerate(items))
        out = report.as_dict()
        out["errors"] = [{"index": e["line"], "error": e["error"]} for e in out["errors"]]
        if report.accepted == 0 and report.errors_total:
            code = status.HTTP_400_BAD_REQUEST
        elif report.result.created:
            code = status.HTTP_201_CREATED
        else:
            code = status.HTTP_200_OK
        return Response(out, status=code)


class TraceIngestAliasApi(TracesApi):
    """``POST /api/v1/traces`` (no slash): the ingest URL that predates the collection."""

    http_method_names = ["post", "options"]

    @extend_schema(
        operation_id="traces_ingest_alias",
        request=OpenApiTypes.OBJECT,
        responses=INGEST_RESPONSES,
        summary="Ingest traces (alias of POST /api/v1/traces/, kept for existing clients)",
        deprecated=True,
    )
    def post(self, request):
        return super().post(request)


def _posted_traces(request) -> list:
    """Return the posted traces as a list, refusing empty or oversized bodies (a chunked
    one got 411 from iofold.lib.bodies.LengthRequiredMiddleware)."""
    try:
        body = request.data
    except RequestDataTooBig:
        raise _too_large("The request body is too large") from None
    if isinstance(body, dict) and "traces" in body:
        # No trace has a "traces" field: this is the batch form, whatever it holds.
        if not isinstance(body["traces"], list):
            raise TraceError('"traces" must be a list of trace objects.')
        items = body["traces"]
    elif isinstance(body, list):
        items = body
    elif isinstance(body, dict) and body:
        items = [body]
    else:
        raise TraceError('Send a trace object, a list of traces or {"traces": [...]}.')
    if len(items) > MAX_API_TRACES:
        raise _too_large(f"The batch has {len(items)} traces")
    return items


def _too_large(what: str) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"{what}; send at most {MAX_API_TRACES} traces per request "
        "(and a body under the server's upload limit), or upload a JSONL file."
    )


# A trace's steps and a conversation's turns come a window at a time: a trace of 5,000
# steps was a 5 MB answer. Steps as many as the trace page shows before "Show all".
STEPS_WINDOW = selectors.MAX_SHOWN_STEPS
TURNS_WINDOW, MOST_TURNS = 50, 200


@extend_schema(
    summary="One trace with its normalised payload",
    description=(
        f"`data.steps` holds at most `steps_limit` steps (default and most {STEPS_WINDOW}) "
        "from `steps_offset`, in stored order (each names its `parent_id`); `steps_page` "
        "says which, and its `next_offset` is the `steps_offset` of the rest."
    ),
    parameters=[OpenApiParameter("steps_offset", int), OpenApiParameter("steps_limit", int)],
)
class TraceDetailApi(WorkspaceScopedMixin, generics.RetrieveAPIView):
    model = Trace
    serializer_class = TraceDetailOut

    def retrieve(self, request, *args, **kwargs):
        offset, limit = window_params(
            request.query_params, "steps", default=STEPS_WINDOW, most=STEPS_WINDOW
        )
        trace = get_object_or_404(self.get_queryset().present(), pk=self.kwargs["pk"])
        selectors.attach_label_counts([trace])
        data, window = selectors.steps_window(trace.data, offset=offset, limit=limit)
        return Response(TraceDetailOut(trace, context={"data": data, "window": window}).data)


# --- eval sets --------------------------------------------------------------------------


def _saved_filter(data) -> dict | None:
    value = data.get("saved_filter")
    return None if value is None else TraceFilters.from_data(value).to_data()


class EvalSetListQueryIn(serializers.Serializer):
    archived = serializers.BooleanField(default=False, help_text="Archived sets instead.")


class EvalSetListApi(WorkspaceScopedMixin, generics.ListAPIView):
    model = EvalSet
    serializer_class = EvalSetOut

    def get_queryset(self):
        query = EvalSetListQueryIn(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        qs = super().get_queryset()
        return qs.archived() if query.validated_data["archived"] else qs.active()

    @extend_schema(
        summary="List eval sets with their label summary, newest first",
        parameters=[EvalSetListQueryIn],
    )
    def get(self, request, *args, **kwargs):
        # Paged by ?limit= and ?offset= as the other lists; the summaries of a page's sets
        # in one go.
        sets = self.paginate_queryset(self.get_queryset())
        summaries = selectors.eval_set_summaries(sets)
        out = EvalSetOut(sets, many=True, context={"summaries": summaries})
        return self.get_paginated_response(out.data)

    @extend_schema(
        summary="Create an eval set",
        request=EvalSetIn,
        responses={201: EvalSetOut},
        parameters=[LOCATION],
    )
    def post(self, request):
        data = EvalSetIn(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        eval_set = services.create_eval_set(
            workspace=request.workspace,
            name=values["name"],
            criteria=values["criteria"],
            target_labels=values["target_labels"],
            source_kind=values["source_kind"],
            saved_filter=_saved_filter(values),
            trace_ids=values["trace_ids"],
            score_to_langfuse=values["score_to_langfuse"],
            unit=values["unit"],
            conversation_idle_minutes=values["conversation_idle_minutes"],
            created_by=request.user,
        )
        return Response(
            EvalSetOut(eval_set).data,
            status=status.HTTP_201_CREATED,
            headers={"Location": reverse("api-eval-set", args=[eval_set.pk])},
        )


class EvalSetDetailApi(WorkspaceScopedMixin, APIView):
    model = EvalSet

    def _object(self, pk: int) -> EvalSet:
        return get_object_or_404(self.get_queryset(), pk=pk)

    @extend_schema(summary="One eval set", responses=EvalSetOut)
    def get(self, request, pk: int):
        return Response(EvalSetOut(self._object(pk)).data)

    @extend_schema(summary="Change an eval set", request=EvalSetUpdateIn, responses=EvalSetOut)
    def patch(self, request, pk: int):
        eval_set = self._object(pk)
        data = EvalSetUpdateIn(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        values["saved_filter"] = _saved_filter(values)
        services.update_eval_set(eval_set=eval_set, **values)
        return Response(EvalSetOut(eval_set).data)

    @extend_schema(summary="Archive an eval set (its labels are kept)", responses={204: None})
    def delete(self, request, pk: int):
        services.archive_eval_set(eval_set=self._object(pk))
        return Response(status=status.HTTP_204_NO_CONTENT)


class EvalSetTracesApi(WorkspaceScopedMixin, APIView):
    model = EvalSet

    @extend_schema(
        summary="Hand-pick traces into an eval set",
        request=EvalSetTracesIn,
        responses=inline_serializer("EvalSetTracesOut", {"added": serializers.IntegerField()}),
    )
    def post(self, request, pk: int):
        eval_set = get_object_or_404(self.get_queryset(), pk=pk)
        data = EvalSetTracesIn(data=request.data)
        data.is_valid(raise_exception=True)
        added = services.add_traces_to_eval_set(
            eval_set=eval_set, trace_ids=data.validated_data["trace_ids"]
        )
        return Response({"added": added})


# --- feedback ---------------------------------------------------------------------------


def _label(request, *, eval_set: EvalSet, trace: Trace, values: dict) -> Response:
    """Record the caller's label of the trace; 201 when it is new, 200 when it replaced one."""
    feedback, created = services.record_feedback(
        eval_set=eval_set,
        trace=trace,
        user=request.user,
        rating=values["rating"],
        note=values["note"],
    )
    if not created:
        return Response(FeedbackOut(feedback).data)
    return Response(
        FeedbackOut(feedback).data,
        status=status.HTTP_201_CREATED,
        headers={"Location": reverse("api-feedback-detail", args=[feedback.pk])},
    )


class FeedbackListApi(WorkspaceScopedMixin, generics.ListAPIView):
    model = Feedback
    serializer_class = FeedbackOut

    def get_queryset(self):
        qs = super().get_queryset().select_related("user").order_by("-updated_at", "-id")
        for key in ("eval_set", "trace"):
            if (pk := id_param(self.request, key)) is not None:
                qs = qs.filter(**{f"{key}_id": pk})
        # A filter that does not read is a 400 naming it, as on the trace list: ignoring
        # ?rating=bogus listed every label.
        if (rating := choice_param(self.request, "rating", Feedback.Rating.values)) is not None:
            qs = qs.filter(rating=rating)
        if choice_param(self.request, "mine", ("1", "true", "0", "false")) in ("1", "true"):
            qs = qs.filter(user=self.request.user)
        return qs

    @extend_schema(
        summary="List labels",
        parameters=[
            OpenApiParameter("eval_set", int),
            OpenApiParameter("trace", int),
            OpenApiParameter("rating", str, enum=Feedback.Rating.values),
            OpenApiParameter("mine", bool, description="Only the caller's labels."),
        ],
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        summary="Label a trace (replaces the caller's earlier label of it in the set)",
        request=FeedbackIn,
        responses={201: FeedbackOut, 200: FeedbackOut},
        parameters=[LOCATION],
    )
    def post(self, request):
        data = FeedbackIn(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        # Unknown ids and other workspaces' ids answer alike, so nothing leaks.
        eval_set = get_object_or_404(
            EvalSet.objects.for_workspace(request.workspace), pk=values["eval_set"]
        )
        traces = Trace.objects.for_workspace(request.workspace)
        trace = get_object_or_404(traces, pk=values["trace"])
        return _label(request, eval_set=eval_set, trace=trace, values=values)


class FeedbackDetailApi(WorkspaceScopedMixin, APIView):
    model = Feedback

    def _object(self, pk: int) -> Feedback:
        return get_object_or_404(
            self.get_queryset().select_related("user", "eval_set", "trace"), pk=pk
        )

    @extend_schema(summary="One label", responses=FeedbackOut)
    def get(self, request, pk: int):
        return Response(FeedbackOut(self._object(pk)).data)

    @extend_schema(
        summary="Change a label (your own; anyone's for owners and admins)",
        request=FeedbackUpdateIn,
        responses=FeedbackOut,
    )
    def patch(self, request, pk: int):
        feedback = self._object(pk)
        data = FeedbackUpdateIn(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        try:
            feedback = services.edit_label(
                feedback=feedback,
                actor=request.user,
                role=request.workspace_role,
                rating=values.get("rating", feedback.rating),
                note=values.get("note", feedback.note),
            )
        except LabelNotYours as exc:
            raise PermissionDenied(exc.message) from None
        return Response(FeedbackOut(feedback).data)

    @extend_schema(
        summary="Remove a label (your own; anyone's for owners and admins)",
        responses={204: None},
    )
    def delete(self, request, pk: int):
        try:
            services.remove_label(
                feedback=self._object(pk), actor=request.user, role=request.workspace_role
            )
        except LabelNotYours as exc:
            raise PermissionDenied(exc.message) from None
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- conversations ------------------------------------------------------------------------


class ConversationOut(serializers.ModelSerializer):
    is_complete = serializers.BooleanField(read_only=True)
    # Complete, but turns arrived or changed since: judged again once they settle.
    is_settling = serializers.BooleanField(read_only=True)

    class Meta:
        model = Conversation
        fields = [
            "id",
            "external_id",
            "source",
            "integration",
            "started_at",
            "last_activity_at",
            "turn_count",
            "has_error",
            "cost",
            "ended_at",
            "completed_at",
            "completion_count",
            "changed_at",
            "is_complete",
            "is_settling",
        ]


class ConversationDetailOut(ConversationOut):
    turn_ids = serializers.SerializerMethodField()
    conversation = serializers.SerializerMethodField()
    turns_page = serializers.SerializerMethodField()

    class Meta(ConversationOut.Meta):
        fields = [*ConversationOut.Meta.fields, "turn_ids", "conversation", "turns_page"]

    @extend_schema_field(WindowOut)
    def get_turns_page(self, obj) -> dict:
        return WindowOut(self.context["window"]).data

    def get_turn_ids(self, obj) -> list[int]:
        return [t.pk for t in self.context["turns"]]

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_conversation(self, obj) -> dict:
        # Exactly what a conversation eval receives (docs/conversations.md).
        return conversation_dict(obj, [t.data for t in self.context["turns"]])


class ConversationLabelIn(BodyIn):
    eval_set = IdField()
    rating = serializers.ChoiceField(choices=Feedback.Rating.choices)
    note = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000)


class JudgementOut(serializers.Serializer):
    eval = serializers.IntegerField(source="eval_id")
    eval_label = serializers.CharField()
    completion = serializers.IntegerField()
    turn_count = serializers.IntegerField()
    # Why it was judged (again): first, resumed, late_turns, changed, turns_left.
    cause = serializers.CharField()
    cause_label = serializers.CharField(source="get_cause_display")
    # A digest of what the eval received: equal digests, equal content.
    fingerprint = serializers.CharField()
    # pending (its run has not judged it yet), passed, failed or error.
    status = serializers.CharField()
    # The eval's newest verdict on it: the one held as its latest and sent back.
    latest = serializers.BooleanField()
    passed = serializers.BooleanField(allow_null=True)
    reason = serializers.CharField()
    error = serializers.CharField()
    created_at = serializers.DateTimeField()


class ConversationsApi(WorkspaceScopedMixin, APIView):
    model = Conversation

    @extend_schema(
        summary="List conversations, latest activity first",
        operation_id="conversations_list",
        parameters=[
            OpenApiParameter("state", str, enum=["open", "complete"]),
            OpenApiParameter("source", str),
            OpenApiParameter("has_error", bool),
            OpenApiParameter("cursor", str),
            OpenApiParameter("limit", int),
        ],
        responses=inline_serializer(
            "ConversationPageOut",
            {
                "results": ConversationOut(many=True),
                "next_cursor": serializers.CharField(allow_null=True),
            },
        ),
    )
    def get(self, request):
        params = request.query_params
        # As the trace list's API: a filter that does not read is refused, not ignored.
        read, unread = read_conversation_filters(params)
        cursor, limit = _read_page(params, unread)
        page = selectors.conversation_page(
            workspace=request.workspace, cursor=cursor, limit=limit, **read
        )
        return Response(
            {
                "results": ConversationOut(page.conversations, many=True).data,
                "next_cursor": page.next_cursor,
            }
        )


class _ConversationMixin(WorkspaceScopedMixin):
    model = Conversation

    def _object(self, pk: int) -> Conversation:
        return get_object_or_404(self.get_queryset(), pk=pk)


class ConversationDetailApi(_ConversationMixin, APIView):
    @extend_schema(
        summary="One conversation with the dict a conversation eval receives",
        description=(
            f"`turn_ids` and `conversation` hold at most `turns_limit` turns (default "
            f"{TURNS_WINDOW}, at most {MOST_TURNS}) from `turns_offset`, in turn order: the "
            "dict a conversation eval would receive of those turns. `turns_page` says which "
            "(`total` is the conversation's), its `next_offset` the `turns_offset` of the rest."
        ),
        parameters=[OpenApiParameter("turns_offset", int), OpenApiParameter("turns_limit", int)],
        responses=ConversationDetailOut,
    )
    def get(self, request, pk: int):
        offset, limit = window_params(
            request.query_params, "turns", default=TURNS_WINDOW, most=MOST_TURNS
        )
        conversation = self._object(pk)
        turns, window = selectors.turns_window(conversation, offset=offset, limit=limit)
        context = {"turns": turns, "window": window}
        return Response(ConversationDetailOut(conversation, context=context).data)


class ConversationLabelsApi(_ConversationMixin, APIView):
    @extend_schema(summary="The conversation's labels", responses=FeedbackOut(many=True))
    def get(self, request, pk: int):
        labels = selectors.conversation_labels(self._object(pk))
        return Response(FeedbackOut(labels, many=True).data)

    @extend_schema(
        summary="Label the conversation in a conversation eval set (replaces the caller's)",
        request=ConversationLabelIn,
        responses={201: FeedbackOut, 200: FeedbackOut},
        parameters=[LOCATION],
    )
    def post(self, request, pk: int):
        conversation = self._object(pk)
        data = ConversationLabelIn(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        eval_set = get_object_or_404(
            EvalSet.objects.for_workspace(request.workspace), pk=values["eval_set"]
        )
        if eval_set.unit != EvalSet.Unit.CONVERSATION or conversation.anchor is None:
            raise TraceError("That eval set judges single traces, not conversations.")
        return _label(request, eval_set=eval_set, trace=conversation.anchor, values=values)


class ConversationRunsApi(_ConversationMixin, APIView):
    @extend_schema(
        summary="Every eval verdict on the conversation, one per completion, newest first",
        responses=JudgementOut(many=True),
    )
    def get(self, request, pk: int):
        judgements = selectors.conversation_judgements(self._object(pk))
        return Response(JudgementOut(judgements, many=True).data)


# --- deletions ----------------------------------------------------------------------------


class DeletionOut(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()

    class Meta:
        model = DeletionRun
        fields = [
            "id",
            "kind",
            "name",
            "status",
            "done",
            "total",
            "error",
            "created_at",
            "started_at",
            "finished_at",
            "url",
        ]

    def get_url(self, run: DeletionRun) -> str:
        return reverse("api-deletion", kwargs={"pk": run.pk})


class DeletionIn(serializers.Serializer):
    eval_set = IdField(required=False, help_text="The eval set to delete, with its labels.")
    trace_ids = serializers.ListField(
        child=IdField(),
        required=False,
        allow_empty=False,
        max_length=deletions.MAX_TRACE_IDS,
        help_text=f"Traces to delete (at most {deletions.MAX_TRACE_IDS:,} per request).",
    )

    def validate(self, data):
        if ("eval_set" in data) == ("trace_ids" in data):
            raise ValidationError("Name either an eval set or trace_ids.")
        return data


class DeletionsApi(WorkspaceScopedMixin, generics.ListAPIView):
    model = DeletionRun
    serializer_class = DeletionOut
    manage_only = True  # deleting for good is for owners and admins

    @extend_schema(
        summary="Delete an eval set or traces in the background",
        description="What is named is hidden at once and deleted by a worker in batches; "
        "poll the returned deletion's url until its status is succeeded or failed. Asking "
        "again for the same rows returns the same deletion (queued again if it failed).",
        request=DeletionIn,
        responses={202: DeletionOut},
    )
    def post(self, request):
        data = DeletionIn(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        try:
            if "eval_set" in values:
                # Found while being deleted too: asking again returns the same deletion.
                eval_set = get_object_or_404(
                    EvalSet.objects.for_workspace(request.workspace, deleting=True),
                    pk=values["eval_set"],
                )
                run = deletions.request_eval_set_deletion(eval_set=eval_set, user=request.user)
            else:
                run = deletions.request_traces_deletion(
                    workspace=request.workspace, trace_ids=values["trace_ids"], user=request.user
                )
        except TraceError as exc:
            raise ValidationError({"detail": exc.message}) from None
        out = DeletionOut(run).data
        return Response(out, status=status.HTTP_202_ACCEPTED, headers={"Location": out["url"]})


class DeletionDetailApi(WorkspaceScopedMixin, generics.RetrieveAPIView):
    model = DeletionRun
    serializer_class = DeletionOut
