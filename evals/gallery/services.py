"""Publish an eval version as a template, start an eval set from one, keep the built-ins."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from django.db import IntegrityError, transaction
from django.db.models import Max, Prefetch
from django.utils.text import slugify

from evals.exceptions import EvalError
from evals.gallery.builtin import BUILTIN_VERSION, BUILTINS
from evals.models import Eval, EvalTemplate, EvalTemplateVersion
from evals.versions.services import TEMPLATE_ORIGIN, _lock_set, next_version
from iofold.lib.text import has_nul
from traces.models import EvalSet

logger = logging.getLogger(__name__)

MAX_DESCRIPTION_CHARS = 1000
FIGURES = Path(__file__).with_name("figures.json")
# What of an Agreement may leave the workspace: counts and ratios, nothing per trace.
SHAREABLE_FIGURES = (
    "labelled",
    "errors",
    "tp",
    "fp",
    "fn",
    "tn",
    "accuracy",
    "precision",
    "recall",
    "f1",
    "kappa",
    "coverage",
    "balanced_accuracy",
)


class GalleryError(EvalError):
    """A template cannot be published or used this way; the message is for the user."""


def shareable_metrics(metrics: dict | None) -> dict:
    """Return the aggregate figures of a version's metrics; ids, notes and the rest stay."""
    metrics = metrics or {}
    out: dict = {}
    for part in ("training", "heldout"):
        figures = metrics.get(part)
        if isinstance(figures, dict):
            out[part] = {k: figures[k] for k in SHAREABLE_FIGURES if k in figures}
    if isinstance(metrics.get("method"), str):
        out["method"] = metrics["method"]
    labels = metrics.get("labels")
    if isinstance(labels, dict):
        out["labels"] = {k: int(labels.get(k, 0)) for k in ("positive", "negative", "neutral")}
    return out


def _latest_versions():
    return Prefetch(
        "versions", queryset=EvalTemplateVersion.objects.order_by("-version"), to_attr="history"
    )


def gallery() -> list[EvalTemplate]:
    """Return every template, built-ins first, each with ``history`` (newest version first)."""
    ensure_builtins()
    return list(
        EvalTemplate.objects.prefetch_related(_latest_versions()).order_by("-builtin", "name")
    )


def ensure_builtins() -> None:
    """Store the built-in templates and their measured figures (idempotent)."""
    figures = json.loads(FIGURES.read_text()) if FIGURES.exists() else {}
    for builtin in BUILTINS:
        template, _ = EvalTemplate.objects.get_or_create(
            slug=builtin.slug,
            defaults={"name": builtin.name, "description": builtin.description, "builtin": True},
        )
        measured = figures.get(builtin.slug, {})
        file, task, _group = builtin.measured_on
        try:
            with transaction.atomic():
                EvalTemplateVersion.objects.get_or_create(
                    template=template,
                    version=BUILTIN_VERSION,
                    defaults={
                        "code": builtin.code,
                        "criteria": builtin.criteria,
                        "metrics": measured.get("metrics", {}),
                        "measured_on": f"shared/data/{file} task {task}: "
                        f"{measured.get('command', 'not measured yet')}",
                    },
                )
        except IntegrityError:
            pass  # another request stored it first


@transaction.atomic
def publish(*, eval: Eval, user, name: str, description: str = "") -> EvalTemplateVersion:
    """Publish ``eval`` as a new template, or as the next version of the workspace's own.

    Only the code, the set's criteria and aggregate figures are copied.
    """
    name = (name or "").strip()
    if not name:
        raise GalleryError("Give the template a name.")
    if len(name) > 200:
        raise GalleryError("Keep the name under 200 characters.")
    # Shown under the name in every workspace's gallery: a line or two, not a document.
    if len((description or "").strip()) > MAX_DESCRIPTION_CHARS:
        raise GalleryError(f"Keep the description under {MAX_DESCRIPTION_CHARS:,} characters.")
    if has_nul(name) or has_nul(description or ""):
        raise GalleryError("The name and description cannot contain a NUL character.")
    slug = slugify(f"{eval.workspace.slug}-{name}")[:80]
    template = EvalTemplate.objects.select_for_update().filter(slug=slug).first()
    if template is not None and template.publisher_id != eval.workspace_id:
        raise GalleryError("That name is taken in the gallery; choose another.")
    if template is None:
        template = EvalTemplate.objects.create(
            slug=slug, name=name, description=description.strip(), publisher=eval.workspace
        )
    elif description.strip():
        template.description = description.strip()
        template.save(update_fields=["description", "updated_at"])
    top = template.versions.aggregate(top=Max("version"))["top"] or 0
    version = EvalTemplateVersion.objects.create(
        template=template,
        version=top + 1,
        code=eval.code,
        criteria=eval.eval_set.criteria,
        metrics=shareable_metrics(eval.metrics),
        measured_on=f"{eval.labels_tested} labels of the publishing workspace",
        published_by=user,
    )
    logger.info("template published template=%s version=%s", template.pk, version.version)
    return version


def start_from_template(
    *,
    template_version: EvalTemplateVersion,
    workspace,
    user=None,
    name: str = "",
    eval_set: EvalSet | None = None,
) -> Eval:
    """Make a draft version from a template, in a new eval set or in one of the workspace's.

    It cannot be activated until it has been measured on the workspace's own labels.
    """
    from traces.exceptions import TraceError
    from traces.services import create_eval_set

    template = template_version.template
    with transaction.atomic():
        if eval_set is None:
            try:
                eval_set = create_eval_set(
                    workspace=workspace,
                    name=name or template.name,
                    criteria=template_version.criteria or template.name,
                    created_by=user,
                )
            except TraceError as exc:
                raise GalleryError(exc.message) from exc
        elif eval_set.workspace_id != workspace.pk:
            raise GalleryError("That eval set is not in this workspace.")
        _lock_set(eval_set.pk)
        eval = Eval.objects.create(
            workspace=workspace,
            eval_set=eval_set,
            version=next_version(eval_set),
            code=template_version.code,
            origin=TEMPLATE_ORIGIN,
            description=f"From the gallery: {template.name} v{template_version.version}.",
            created_by=user,
        )
    logger.info("eval started from template template=%s eval=%s", template.pk, eval.pk)
    return eval
