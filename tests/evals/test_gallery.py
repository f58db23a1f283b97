"""The gallery: publish a version as a template, start from one in another workspace,
measure it on that workspace's own labels before use; built-ins carry their figures."""

import json

import pytest
from django.urls import reverse

from evals.exceptions import EvalError
from evals.gallery import services
from evals.gallery.builtin import BUILTINS
from evals.models import Eval, EvalTemplate, EvalTemplateVersion
from evals.versions import services as version_services
from tests.evals.builders import REFUSAL_CODE, labelled_set, make_eval
from traces.models import Feedback, Trace

pytestmark = pytest.mark.django_db


def _published(workspace, owner):
    eval_set, traces = labelled_set(workspace, good=3, bad=3)
    for f in Feedback.objects.filter(eval_set=eval_set):
        f.note = f"secret note {f.pk}"
        f.save()
    v1 = make_eval(eval_set, version=1, code=REFUSAL_CODE)
    from evals.execution.runs import run_unjudged_labels
    from evals.metrics.measure import score_eval_version

    run_unjudged_labels(eval=v1)
    score_eval_version(eval=v1)
    v1.metrics = {**v1.metrics, "heldout_trace_ids": [t.pk for t in traces[:2]]}
    v1.save()
    return services.publish(eval=v1, user=owner, name="Refusals", description="no refusing")


def test_a_published_template_carries_no_trace_or_label_data(workspace, owner):
    version = _published(workspace, owner)

    stored = json.dumps(
        {
            "template": [version.template.name, version.template.description],
            "version": [version.code, version.criteria, version.metrics, version.measured_on],
        }
    )
    for trace in Trace.objects.filter(workspace=workspace):
        assert trace.external_id not in stored
        assert json.dumps(trace.data["input"])[1:-1] not in stored
    for feedback in Feedback.objects.all():
        assert feedback.note not in stored
    assert "heldout_trace_ids" not in stored
    # The figures are aggregates only: no per-trace lists anywhere.
    assert "[" not in json.dumps(version.metrics)
    assert version.metrics["training"]["labelled"] == 6
    assert set(version.metrics) <= {"training", "heldout", "method", "labels"}


def test_another_workspace_starts_from_it_and_must_measure_before_activating(
    workspace, owner, other_workspace, outsider, client
):
    version = _published(workspace, owner)
    client.force_login(outsider)
    response = client.post(
        reverse("evals:use_template", args=[other_workspace.slug, version.pk]),
        {"name": "Our refusals"},
    )
    eval = Eval.objects.get(workspace=other_workspace)
    assert response.url == eval.get_absolute_url()
    assert (eval.eval_set.name, eval.origin, eval.status) == ("Our refusals", "template", "draft")
    assert eval.code == version.code and eval.eval_set.criteria == version.criteria
    # Nothing of the publisher's labels came along.
    assert not Feedback.objects.filter(workspace=other_workspace).exists()
    with pytest.raises(EvalError, match="measure it on this workspace's labels"):
        version_services.activate_or_roll_back(eval=eval)

    # Labelled and measured in its new home, it can be used.
    from evals.execution.runs import run_unjudged_labels
    from evals.metrics.measure import score_eval_version
    from tests.traces.factories import TraceFactory, trace_data

    for n, (output, rating) in enumerate([("Sure, here.", "positive"), ("I cannot.", "negative")]):
        trace = TraceFactory(workspace=other_workspace, data=trace_data(n, output=output))
        Feedback.objects.create(
            workspace=other_workspace,
            trace=trace,
            eval_set=eval.eval_set,
            user=outsider,
            rating=rating,
        )
    run_unjudged_labels(eval=eval)
    eval = score_eval_version(eval=eval)
    assert eval.labels_tested == 2 and eval.agreement == 1.0
    assert version_services.activate_or_roll_back(eval=eval).eval.status == "active"


def test_publishing_again_makes_a_new_version_and_names_are_per_publisher(
    workspace, owner, other_workspace, outsider
):
    first = _published(workspace, owner)
    v2 = make_eval(
        first.template.versions.first().template and Eval.objects.first().eval_set, version=2
    )
    second = services.publish(eval=v2, user=owner, name="Refusals")
    assert (second.template_id, second.version) == (first.template_id, 2)
    # Another workspace's "Refusals" is its own template.
    eval_set, _ = labelled_set(other_workspace)
    theirs = services.publish(eval=make_eval(eval_set, version=1), user=outsider, name="Refusals")
    assert theirs.template_id != first.template_id


def test_the_built_in_gallery_lists_measured_templates(client, workspace, owner):
    client.force_login(owner)
    page = client.get(reverse("evals:gallery", args=[workspace.slug]))
    assert page.status_code == 200
    assert EvalTemplate.objects.filter(builtin=True).count() == len(BUILTINS) >= 4
    no_refusal = EvalTemplateVersion.objects.get(template__slug="no-refusal")
    # Figures stored with the template, from the command that measured them.
    assert no_refusal.metrics["heldout"]["labelled"] == 900
    assert no_refusal.metrics["heldout"]["kappa"] > 0.7
    assert "measure_gallery" in no_refusal.measured_on
    detail = client.get(reverse("evals:template", args=[workspace.slug, no_refusal.template_id]))
    assert b'data-testid="figures"' in detail.content and b"900 labels" in detail.content


def test_a_template_version_that_is_no_number_shows_the_newest(client, workspace, owner):
    """ "²" is a digit to ``str.isdigit`` but not to ``int``: the page answered a 500."""
    client.force_login(owner)
    client.get(reverse("evals:gallery", args=[workspace.slug]))  # the built-ins
    template = EvalTemplateVersion.objects.get(template__slug="no-refusal").template

    page = client.get(
        reverse("evals:template", args=[workspace.slug, template.pk]), {"version": "\u00b2"}
    )

    assert page.status_code == 200


def test_a_version_published_before_it_was_measured_shows_as_not_measured(
    client, workspace, owner, other_workspace, outsider
):
    """Its figures are empty; every workspace's gallery still opens (it was a 500 for all)."""
    eval_set, _ = labelled_set(workspace)
    unmeasured = make_eval(eval_set, version=1, metrics={})
    published = services.publish(eval=unmeasured, user=owner, name="Fresh from the editor")
    client.force_login(outsider)

    gallery = client.get(reverse("evals:gallery", args=[other_workspace.slug]))
    detail = client.get(
        reverse("evals:template", args=[other_workspace.slug, published.template_id])
    )

    assert gallery.status_code == 200 and detail.status_code == 200
    row = gallery.content.decode().split("Fresh from the editor")[1].split("</tr>")[0]
    assert "not measured" in row
    assert "not measured" in detail.content.decode()


def test_a_description_longer_than_a_gallery_line_is_refused(client, workspace, owner):
    eval_set, _ = labelled_set(workspace)
    v1 = make_eval(eval_set, version=1)
    client.force_login(owner)

    page = client.post(
        reverse("evals:publish", args=[workspace.slug, v1.pk]),
        {"name": "Refusals", "description": "Checks refusals. " * 100},
        follow=True,
    )

    assert "Keep the description under 1,000 characters." in page.content.decode()
    assert not EvalTemplate.objects.filter(name="Refusals").exists()


def test_built_in_code_passes_the_sandbox_checks():
    import sandbox

    for builtin in BUILTINS:
        assert sandbox.validate(builtin.code) == [], builtin.slug


def test_only_owners_and_admins_publish(client, workspace, member):
    eval_set, _ = labelled_set(workspace)
    v1 = make_eval(eval_set, version=1)
    client.force_login(member)
    response = client.post(reverse("evals:publish", args=[workspace.slug, v1.pk]), {"name": "X"})
    assert response.status_code == 403
    assert not EvalTemplate.objects.filter(builtin=False).exists()
