"""Judge calls written before ``unpriced_calls`` existed (0021) read as $0 when their model
had no price: mark them unpriced, so the pages say "unknown" instead of "$0".

Such rows are recognised without their model (runs recorded it only from 0021 on): every
price in the list has both figures above 0, so a call with tokens costs more than $0
unless its model had no price. Judge calls with tokens and a cost of exactly 0 are those
calls. A deployment whose IOFOLD_LLM_PRICES prices a model at $0 cannot tell the two apart:
there the rows are left as they are. Rows that mixed priced and unpriced calls (a cost
above 0) cannot be recognised either; docs/judges.md says so.
"""

import logging

from django.db import migrations
from django.db.models import F, Q

# The rows written before 0021: judge calls with tokens, a cost of exactly 0, none unpriced.
OLDER_UNPRICED = Q(unpriced_calls=0, judge_calls__gt=0, cost_usd=0) & (
    Q(input_tokens__gt=0) | Q(output_tokens__gt=0)
)


def free_model_priced() -> bool:
    """Whether this deployment prices some model at $0 (then $0 may be the real cost)."""
    from evals.generation.pricing import price_table

    return any(
        not price.input_per_million or not price.output_per_million
        for price in price_table().values()
    )


def mark_older_unpriced_calls(apps, schema_editor) -> None:
    if free_model_priced():
        logging.getLogger(__name__).warning(
            "judge calls priced at $0 before 0021 left as they are: IOFOLD_LLM_PRICES "
            "prices a model at $0, so a $0 call may have been free"
        )
        return
    # update() leaves updated_at alone: the verdicts stay in the month they were given.
    for name in ("EvalExecution", "EvalRun"):
        model = apps.get_model("evals", name)
        model.objects.filter(OLDER_UNPRICED).update(unpriced_calls=F("judge_calls"))


class Migration(migrations.Migration):
    dependencies = [
        ("evals", "0021_judge_unpriced_calls"),
    ]

    operations = [
        migrations.RunPython(mark_older_unpriced_calls, migrations.RunPython.noop, elidable=True),
    ]
