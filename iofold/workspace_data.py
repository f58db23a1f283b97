"""A workspace's data as a whole: export it, import it, and erase it after a grace period.

``export_workspace`` writes every row a workspace owns, in every app, to one versioned
archive (gzip-compressed JSON lines); ``import_workspace`` reads it into any installation
as a new workspace, with new ids. Secrets are never in an archive: the integrations' keys
and webhook secrets and the provider key (encrypted fields) are left out, and so are API
tokens and invitations, which are credentials. An imported workspace asks for its keys
again. Users appear by email only, and are matched by email on import.

It sits above the apps (like ``iofold.pipeline``) because it reads every app's rows; the
management commands ``export_workspace`` and ``import_workspace`` call it. With
``delete_workspace`` (``workspaces.services.schedule_workspace_deletion``) they serve a
customer's data export and erasure requests.
"""

from __future__ import annotations

import contextlib
import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

from django.core.exceptions import ValidationError
from django.core.serializers.base import DeserializationError
from django.core.serializers.json import DjangoJSONEncoder
from django.core.serializers.python import Deserializer
from django.core.serializers.python import Serializer as PythonSerializer
from django.core.validators import validate_email
from django.db import DataError, IntegrityError, models, transaction
from django.utils import timezone

from accounts.models import User
from evals.models import (
    Activity,
    AutomationSettings,
    AutoRefinement,
    Comment,
    ContinuousPause,
    ConversationJudgement,
    EvalExecution,
    EvalRun,
    EvalRunChunk,
    EvalSetAutomation,
    Generation,
    JudgeResponse,
    JudgeSpendMonth,
    JudgeTemplate,
    ProviderSettings,
    VerdictDay,
    VerdictSpendDay,
)
from evals.models import Eval as EvalVersion
from integrations.adapters import get_adapter_class
from integrations.models import Integration, SyncRun, UploadRun
from iofold.exceptions import ApplicationError
from iofold.lib import jsontext
from iofold.lib.fields import EncryptedTextField
from iofold.lib.runs import ACTIVE, BackgroundRun, RunStatus
from traces.conversations import conversation_key
from traces.models import (
    Conversation,
    DeletionRun,
    EvalSet,
    EvalSetTrace,
    Feedback,
    LabelAssignment,
    LabelChange,
    ResponseWait,
    ScoreImportRun,
    Trace,
)
from workspaces.memberships import forget_memberships
from workspaces.models import Membership, Workspace

FORMAT = "iofold-workspace"
VERSION = 1
# Parents before children: an import maps each row's references to ids it already made.
MODELS: list[type[models.Model]] = [
    Workspace,
    Membership,
    Integration,
    SyncRun,
    Trace,
    Conversation,
    EvalSet,
    EvalSetTrace,
    Feedback,
    LabelChange,
    LabelAssignment,
    JudgeTemplate,
    EvalSetAutomation,
    ProviderSettings,
    AutomationSettings,
    JudgeResponse,
    EvalVersion,
    Generation,
    EvalRun,
    EvalExecution,
    ConversationJudgement,
    Comment,
    Activity,
    AutoRefinement,
]
# Workspace rows an archive leaves out on purpose, besides credentials (API tokens,
# invitations): work in flight on this installation, which an import fails anyway.
NOT_EXPORTED: set[type[models.Model]] = {
    EvalRunChunk,  # a slice of a run; the run itself is exported
    UploadRun,  # points at a file on this server's disk, deleted once ingested
    ScoreImportRun,  # its labels are exported; the run reads a source of this installation
    JudgeSpendMonth,  # this installation's running total; rebuilt from the runs' costs
    VerdictDay,  # counts of the verdicts, kept by the database as the import writes them
    VerdictSpendDay,  # the verdicts' spend per day, kept the same way
    DeletionRun,  # work in flight; the rows it marks come in unmarked
    # This installation's workers' protection; the automatic runs it holds are not
    # exported either, so an imported set starts with continuous evaluation running.
    ContinuousPause,
    # Reads of this installation's OpenAI key in flight; the traces themselves are exported.
    ResponseWait,
}
BY_LABEL = {model._meta.label_lower: model for model in [User, *MODELS]}
# Models some archived row refers to: an import remembers the new id of their rows only
# (the rest, labels and verdicts, are most of an archive and nothing points at them).
REFERRED_TO = {
    f.related_model._meta.label_lower
    for model in MODELS
    for f in model._meta.concrete_fields
    if f.is_relation and f.related_model._meta.label_lower in BY_LABEL
}
# Never exported: links to this installation's scheduler, which process ran a run, and
# the deletion marks (their DeletionRun is not exported: the rows come in unmarked).
# A trace's conversation is linked again on import (a conversation points at its first
# trace, so one of the two links has to wait until both exist).
LEFT_OUT = {
    "integrations.integration": {"periodic_task", "deletion_requested_at"},
    "traces.trace": {"conversation", "deletion"},
    "traces.evalset": {"deletion"},
    "*": {"owner"},
}
CHUNK = 1000
# An import writes a batch once it holds CHUNK rows or this many bytes of them, whichever
# comes first: a batch of large traces stays small in memory.
CHUNK_BYTES = 16 * 1024 * 1024
# The longest line an import reads: a row's whole text, payload and all. Far above any
# trace ingest accepts (2 MiB a line); a longer line is refused before it fills memory.
MAX_LINE_BYTES = 64 * 1024 * 1024
# Deeper than ingest allows (64): traces stored before that limit may be deeper.
MAX_DEPTH = 400


class _Encoder(DjangoJSONEncoder):
    """Django's encoder, keeping microseconds (it cuts times to milliseconds)."""

    def default(self, o):
        if isinstance(o, datetime):
            return o.isoformat()
        return super().default(o)


class ArchiveError(ApplicationError):
    """The archive cannot be read or imported here."""


@dataclass
class Summary:
    """What an export wrote or an import created, by model."""

    workspace: Workspace | None = None
    counts: dict[str, int] = field(default_factory=dict)
    # After an import: the secrets the archive left out, for someone to enter again.
    to_enter_again: list[str] = field(default_factory=list)


# --- export ----------------------------------------------------------------------------------


def export_workspace(*, workspace: Workspace, out: IO[bytes]) -> Summary:
    """Write the workspace's archive to ``out`` (a binary file)."""
    summary = Summary(workspace=workspace)
    with gzip.GzipFile(fileobj=out, mode="wb") as archive:

        def write(obj: dict) -> None:
            archive.write(json.dumps(obj, cls=_Encoder).encode() + b"\n")

        write(
            {
                "format": FORMAT,
                "version": VERSION,
                "exported_at": timezone.now(),
                "workspace": {"name": workspace.name, "slug": workspace.slug},
            }
        )
        for user in _users(workspace):
            write({"model": "accounts.user", "pk": user.pk, "fields": {"email": user.email}})
            summary.counts["accounts.user"] = summary.counts.get("accounts.user", 0) + 1
        for model in MODELS:
            label = model._meta.label_lower
            rows = _rows(model, workspace)
            count = 0
            for start in range(0, len(rows), CHUNK):
                for obj in _serialize(model, rows[start : start + CHUNK]):
                    write(obj)
                    count += 1
            summary.counts[label] = count
    return summary


def _rows(model, workspace) -> list[int]:
    if model is Workspace:
        return [workspace.pk]
    return list(model.objects.for_workspace(workspace).order_by("pk").values_list("pk", flat=True))


def _serialize(model, pks: list[int]) -> Iterator[dict]:
    skip = _left_out(model)
    objects = model._default_manager.filter(pk__in=pks).order_by("pk")
    for obj in PythonSerializer().serialize(objects):
        obj["fields"] = {k: v for k, v in obj["fields"].items() if k not in skip}
        yield obj


def _left_out(model) -> set[str]:
    """Fields never written: encrypted secrets, and the links LEFT_OUT names."""
    label = model._meta.label_lower
    secrets = {f.name for f in model._meta.concrete_fields if isinstance(f, EncryptedTextField)}
    return secrets | LEFT_OUT.get(label, set()) | LEFT_OUT["*"]


def _users(workspace) -> list[User]:
    """The users a workspace's rows name: members, labellers, authors."""
    ids = set(Membership.objects.for_workspace(workspace).values_list("user_id", flat=True))
    ids |= set(Feedback.objects.for_workspace(workspace).values_list("user_id", flat=True))
    for model in (EvalSet, EvalVersion, Generation):
        ids |= set(model.objects.for_workspace(workspace).values_list("created_by_id", flat=True))
    ids.discard(None)
    return list(User.objects.filter(pk__in=ids).order_by("pk"))


# --- import ----------------------------------------------------------------------------------


def import_workspace(*, source: IO[bytes], slug: str | None = None) -> Summary:
    """Create a new workspace from an archive, in one transaction; return what it made.

    Every row is checked as the model's form would check it (types, lengths, choices) before
    anything is written; a row the database still refuses rolls the whole import back.
    """
    try:
        with gzip.GzipFile(fileobj=source, mode="rb") as archive:
            lines = _lines(archive)
            manifest = _manifest(next(lines, b""))
            slug = _check_slug(slug or manifest["workspace"]["slug"])
            if Workspace.objects.filter(slug=slug).exists():
                raise ArchiveError(f"A workspace with the slug “{slug}” exists; choose another.")
            with transaction.atomic(), _keep_timestamps():
                return _import(lines, slug)
    except (IntegrityError, DataError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ArchiveError(
            f"The archive's rows break a rule of this database ({first_line}); nothing was "
            "imported."
        ) from None
    except (OSError, EOFError, ValueError, KeyError, TypeError) as exc:
        raise ArchiveError(f"The archive cannot be read: {exc}") from None


def _lines(archive: IO[bytes]) -> Iterator[bytes]:
    """Yield the archive's lines one at a time, refusing one longer than MAX_LINE_BYTES."""
    number = 0
    while line := archive.readline(MAX_LINE_BYTES + 1):
        number += 1
        if len(line) > MAX_LINE_BYTES:
            raise ArchiveError(
                f"Line {number} of the archive is longer than {MAX_LINE_BYTES >> 20} MiB; "
                "nothing was imported."
            )
        yield line


def _check_slug(slug: Any) -> str:
    """Return ``slug`` if a workspace may have it (its URLs are /w/<slug>/), or refuse it."""
    try:
        return Workspace._meta.get_field("slug").clean(slug, None)
    except ValidationError as exc:
        raise ArchiveError(f"“{slug}” cannot be a workspace's slug: {' '.join(exc.messages)}")


def _manifest(line: bytes) -> dict:
    try:
        manifest = json.loads(line)
    except ValueError:
        raise ArchiveError("Not an iofold workspace archive.") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArchiveError("Not an iofold workspace archive.")
    if manifest.get("version") != VERSION:
        raise ArchiveError(
            f"Archive version {manifest.get('version')} is not supported here (this "
            f"installation reads version {VERSION}); upgrade iofold first."
        )
    return manifest


def _import(lines, slug: str) -> Summary:
    ids: dict[str, dict[Any, int]] = {label: {} for label in BY_LABEL}
    summary = Summary()
    pending: list[dict] = []
    pending_bytes = 0
    label_of_pending = None
    workspaces = 0

    def flush() -> None:
        nonlocal pending_bytes
        if pending:
            _create(BY_LABEL[label_of_pending], pending, ids, slug, summary)
            pending.clear()
            pending_bytes = 0

    for raw in lines:
        obj = _row(raw)
        label = obj["model"]
        if label == "accounts.user":
            ids[label][obj["pk"]] = _user(obj["fields"].get("email")).pk
            continue
        if label == "workspaces.workspace":
            workspaces += 1
            if workspaces > 1:
                raise ArchiveError("The archive holds more than one workspace.")
        if label != label_of_pending or len(pending) >= CHUNK or pending_bytes >= CHUNK_BYTES:
            flush()
            label_of_pending = label
        pending.append(obj)
        pending_bytes += len(raw)
    flush()
    if summary.workspace is None:
        raise ArchiveError("The archive holds no workspace.")
    _link_conversations(summary.workspace)
    summary.to_enter_again = _secrets_to_enter_again(summary.workspace)
    return summary


def _secrets_to_enter_again(workspace: Workspace) -> list[str]:
    """Name each imported row's secrets (left out of every archive), with what to do."""
    lines = []
    for model in MODELS[1:]:
        secrets = [f for f in model._meta.concrete_fields if isinstance(f, EncryptedTextField)]
        if not secrets:
            continue
        names = ", ".join(str(f.verbose_name) for f in secrets)
        for obj in model.objects.for_workspace(workspace).order_by("pk"):
            line = f"{model._meta.verbose_name} “{obj}”: {names}"
            if isinstance(obj, Integration) and not obj.enabled:
                line += " (disabled until then)"
            lines.append(line)
    lines.append("API tokens and invitations are not exported: issue and send them again")
    return lines


def _row(raw: bytes) -> dict:
    """One archive line as ``{"model", "pk", "fields"}``, or refuse it."""
    obj = jsontext.loads(raw, max_depth=MAX_DEPTH)
    if not (
        isinstance(obj, dict)
        and isinstance(obj.get("model"), str)
        and isinstance(obj.get("fields"), dict)
        and isinstance(obj.get("pk"), int | str)
    ):
        raise ArchiveError(f"The archive holds a line that is not a row: {raw[:80]!r}.")
    if obj["model"] not in BY_LABEL:
        raise ArchiveError(f"The archive holds rows of {obj['model'][:80]!r}, unknown here.")
    return obj


def _link_conversations(workspace: Workspace) -> None:
    """Point imported traces at their conversations, found by the trace's session key."""
    conversations = {
        (source_key, external_id): pk
        for source_key, external_id, pk in Conversation.objects.for_workspace(
            workspace
        ).values_list("source_key", "external_id", "pk")
    }
    if not conversations:
        return
    traces = Trace.objects.for_workspace(workspace).order_by("pk").only("pk", "source_key", "data")
    last = 0
    # A page of payloads at a time: all of them at once held every trace in memory.
    while page := list(traces.filter(pk__gt=last)[:CHUNK]):
        last = page[-1].pk
        linked = []
        for trace in page:
            key = conversation_key(trace.data)
            if key and (trace.source_key, key) in conversations:
                trace.conversation_id = conversations[(trace.source_key, key)]
                linked.append(trace)
        Trace.objects.bulk_update(linked, ["conversation"], batch_size=500)


def _user(email: Any) -> User:
    try:
        if not isinstance(email, str) or len(email) > 254:
            raise ValidationError("not an email address")
        validate_email(email)
    except ValidationError:
        raise ArchiveError(f"The archive names a user by {str(email)[:80]!r}, not an email.")
    user = User.objects.filter(email__iexact=email).first()
    if user is None:
        # No password: the person sets one with "forgot password" when they sign in.
        user = User(email=email)
        user.set_unusable_password()
        user.save()
    return user


def _create(model, objs: list[dict], ids: dict, slug: str, summary: Summary) -> None:
    label = model._meta.label_lower
    relations = {f.name: f for f in model._meta.concrete_fields if f.is_relation}
    deferred: list[tuple[models.Model, dict[str, Any]]] = []
    made = []
    allowed = {f.name for f in model._meta.concrete_fields if not f.primary_key}
    for obj in objs:
        fields = dict(obj["fields"])
        if unknown := sorted(set(fields) - allowed):
            # An id among them would choose the new row's id, past the database's sequence.
            raise ArchiveError(f"{label} {obj['pk']} has fields unknown here: {unknown[:5]}.")
        later = {}
        for name, fk in relations.items():
            old = fields.get(name)
            if old is None:
                continue
            if fk.related_model is model:
                later[name] = old  # a parent in the same batch: set once all exist
                fields[name] = None
                continue
            new = ids[fk.related_model._meta.label_lower].get(old)
            if new is None:
                raise ArchiveError(f"{label} {obj['pk']} refers to a missing {name} {old}.")
            fields[name] = new
        if model is Workspace:
            fields["slug"] = slug
            fields["deletion_requested_at"] = None
            fields["deletion_scheduled_for"] = None
        instance = _check(model, obj["pk"], fields, relations)
        _arrive(instance)
        made.append((obj["pk"], instance))
        if later:
            deferred.append((instance, later))
    model._default_manager.bulk_create([instance for _, instance in made])
    if model is Membership:
        # bulk_create sends no signal: the members' cached memberships lack this workspace.
        forget_memberships(instance.user_id for _, instance in made)
    for old, instance in made:
        if instance.pk is None:  # pragma: no cover - every supported database returns ids
            raise ArchiveError("The database did not return the new rows' ids.")
        if label in REFERRED_TO:
            ids[label][old] = instance.pk
    for instance, later in deferred:
        updates = {f"{name}_id": ids[label][old] for name, old in later.items()}
        model._default_manager.filter(pk=instance.pk).update(**updates)
    summary.counts[label] = summary.counts.get(label, 0) + len(made)
    if model is Workspace:
        summary.workspace = made[0][1]


def _check(model, pk, fields: dict, relations: dict) -> models.Model:
    """Build a row from its archived fields, each checked as the model's form checks it.

    Types, lengths, choices and ranges; not blankness, which forms ask of people but rows
    may have (a receiving source has no host). Links were mapped to this import's rows
    already; fields the archive leaves out keep their defaults. Uniqueness and constraints
    are the database's to check, in bulk.
    """
    label = model._meta.label_lower
    try:
        instance = next(Deserializer([{"model": label, "pk": None, "fields": fields}])).object
        for name in fields.keys() - relations.keys():
            f = model._meta.get_field(name)
            value = getattr(instance, f.attname)
            if value not in f.empty_values:
                f.validate(value, instance)
                f.run_validators(value)
    except DeserializationError as exc:
        raise ArchiveError(f"{label} {pk}: {str(exc.__cause__ or exc)[:300]}") from None
    except ValidationError as exc:
        raise ArchiveError(f"{label} {pk}: {name}: {' '.join(exc.messages)[:300]}") from None
    return instance


def _arrive(instance) -> None:
    """Adjust a row to its new installation: no unfinished runs, no sync without its key."""
    if isinstance(instance, BackgroundRun) and instance.status in ACTIVE:
        instance.status = RunStatus.FAILED
        instance.error = "Interrupted: the workspace was exported while this ran."
    if isinstance(instance, Integration) and get_adapter_class(instance.kind).capabilities.pull:
        # Its key is not in the archive: syncing waits until someone enters it again.
        instance.enabled = False


@contextlib.contextmanager
def _keep_timestamps():
    """Keep the archive's created/updated times instead of stamping the import's time.

    ``auto_now``/``auto_now_add`` would overwrite them on insert; drift and the label
    history read them. Switched off on the fields for the import only (a management
    command, one thread).
    """
    switched = []
    for model in MODELS:
        for f in model._meta.concrete_fields:
            if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False):
                switched.append((f, f.auto_now, f.auto_now_add))
                f.auto_now = f.auto_now_add = False
    try:
        yield
    finally:
        for f, now, now_add in switched:
            f.auto_now, f.auto_now_add = now, now_add
