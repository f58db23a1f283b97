"""Name the tool steps of OpenTelemetry traces stored before after their tool.

Tool steps received on /v1/traces were named after their span ("execute_tool get_order",
"cancel_order.tool", "FunctionTool.call") until the receiver named them after the tool
(gen_ai.tool.name, tool.name, traceloop.entity.name, else the span name less
"execute_tool "). The step keeps the span's attributes, so the stored trace is rewritten
as the receiver writes it now (``renamed_tool_steps``): the step's name, the span's name in
``metadata.otel.span_name``, the trace's name if its root is such a step, and the columns
made from them (search text, content hash: a resent trace is then unchanged). OTLP traces
only, 200 a batch by primary key, each batch committed on its own (no lock on the whole
table); a rerun rewrites nothing done. Verdicts given before are kept as they are.
Backwards is a no-op: the old names stay in ``otel.span_name``.
"""

import hashlib

from django.db import migrations

from integrations.otlp.normalise import renamed_tool_steps
from iofold.lib import jsontext
from traces.ingest import trace_columns

BATCH = 200


def forwards(apps, schema_editor):
    Trace = apps.get_model("traces", "Trace")
    rows = Trace.objects.using(schema_editor.connection.alias).filter(source="otlp")
    last = 0
    while batch := list(rows.filter(pk__gt=last).order_by("pk").only("pk", "data")[:BATCH]):
        last = batch[-1].pk
        changed = []
        for row in batch:
            data = renamed_tool_steps(row.data)
            if data is None:
                continue
            columns = trace_columns(data)
            row.data, row.name, row.search_text = data, columns["name"], columns["search_text"]
            # As ingest hashes it (traces.ingest): a resend of the trace is then unchanged.
            row.content_hash = hashlib.sha256(jsontext.dumps_sorted(data).encode()).hexdigest()
            changed.append(row)
        Trace.objects.using(schema_editor.connection.alias).bulk_update(
            changed, ["data", "name", "search_text", "content_hash"]
        )


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("traces", "0023_search_text_casefold")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
