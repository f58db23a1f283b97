"""fit_eval and score_eval on small JSONL files, and on bad ones."""

import json

import pytest
from django.core.management import CommandError, call_command

from tests.traces.factories import trace_data

pytestmark = pytest.mark.django_db

GOOD = "Your refund is on its way."
BAD = "I cannot help with that."


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def rows(n_good, n_bad, *, start=0, task="no_refusal"):
    out = []
    for i in range(n_good + n_bad):
        good = i < n_good
        data = trace_data(start + i, output=GOOD if good else BAD)
        out.append({**data, "label": "positive" if good else "negative", "task": task})
    return out


def last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


def test_fit_then_score(tmp_path, capsys):
    train = write_jsonl(tmp_path / "train.jsonl", rows(6, 6) + rows(2, 2, start=50, task="other"))
    test = write_jsonl(tmp_path / "test.jsonl", rows(3, 3, start=100))
    out = tmp_path / "eval.py"

    call_command(
        "fit_eval",
        labels=str(train),
        provider="offline",
        out=str(out),
        task="no_refusal",
        criteria="The assistant must not refuse",
    )
    fitted = last_json(capsys.readouterr().out)

    assert "def eval_fn" in out.read_text()
    assert "The assistant must not refuse" in out.read_text()
    assert fitted["labels"] == {"positive": 6, "negative": 6, "neutral": 0}
    assert fitted["training"]["accuracy"] == 1.0
    assert fitted["heldout"]["labelled"] == 12

    call_command("score_eval", eval=str(out), labels=str(test), task="no_refusal")
    output = capsys.readouterr().out
    scored = last_json(output)
    assert (scored["tp"], scored["tn"], scored["fp"], scored["fn"]) == (3, 3, 0, 0)
    assert scored["accuracy"] == 1.0
    assert "accuracy 1.000" in output


def test_score_counts_errors_apart(tmp_path, capsys):
    code = tmp_path / "eval.py"
    code.write_text(
        "def eval_fn(trace):\n"
        "    if 'cannot' in str(trace.get('output')):\n"
        "        raise ValueError('boom')\n"
        "    return True, 'ok'\n"
    )
    labels = write_jsonl(tmp_path / "t.jsonl", rows(2, 2))
    call_command("score_eval", eval=str(code), labels=str(labels))
    scored = last_json(capsys.readouterr().out)
    assert (scored["errors"], scored["tp"], scored["labelled"]) == (2, 2, 4)
    assert scored["coverage"] == 0.5
    assert "below the 80% bar" in scored["low_confidence_reason"]


def test_bad_line_is_named(tmp_path):
    labels = tmp_path / "bad.jsonl"
    good_rows = rows(1, 1)
    labels.write_text(json.dumps(good_rows[0]) + "\n" + json.dumps(good_rows[1]) + "\n{not json\n")
    with pytest.raises(CommandError, match="line 3: invalid JSON"):
        call_command("fit_eval", labels=str(labels), provider="offline", out=str(tmp_path / "e.py"))
    with pytest.raises(CommandError, match="line 3"):
        code = tmp_path / "e2.py"
        code.write_text("def eval_fn(trace):\n    return True, 'ok'\n")
        call_command("score_eval", eval=str(code), labels=str(labels))


def test_missing_label_is_named(tmp_path):
    row = rows(1, 0)[0]
    del row["label"]
    labels = write_jsonl(tmp_path / "x.jsonl", [row])
    with pytest.raises(CommandError, match="line 1: trace 't0': missing field 'label'"):
        call_command("fit_eval", labels=str(labels), provider="offline", out=str(tmp_path / "e.py"))


def test_invalid_eval_file_is_refused(tmp_path):
    code = tmp_path / "eval.py"
    code.write_text("import os\ndef eval_fn(trace):\n    return True, os.getcwd()\n")
    labels = write_jsonl(tmp_path / "t.jsonl", rows(1, 1))
    with pytest.raises(CommandError, match="not a valid eval: line 1"):
        call_command("score_eval", eval=str(code), labels=str(labels))


def test_llm_provider_without_key_is_a_clear_error(tmp_path, settings):
    settings.OPENAI_API_KEY = ""
    labels = write_jsonl(tmp_path / "t.jsonl", rows(1, 1))
    with pytest.raises(CommandError, match="needs OPENAI_API_KEY"):
        call_command("fit_eval", labels=str(labels), provider="openai", out=str(tmp_path / "e.py"))


def test_fit_with_openai_against_the_fake_server(tmp_path, settings, fake_llm, capsys):
    settings.OPENAI_API_KEY = "sk-test-abcdef123456"
    settings.OPENAI_BASE_URL = fake_llm.openai_base_url
    fake_llm.push_text(
        "```python\ndef eval_fn(trace):\n"
        "    refused = 'cannot' in str(trace.get('output'))\n"
        "    return (not refused), 'refused' if refused else 'answered'\n```",
        input_tokens=3000,
        output_tokens=100,
    )
    labels = write_jsonl(tmp_path / "t.jsonl", rows(2, 2))
    out = tmp_path / "e.py"
    call_command("fit_eval", labels=str(labels), provider="openai", model="gpt-4o", out=str(out))
    fitted = last_json(capsys.readouterr().out)
    assert fitted["model"] == "gpt-4o" and fitted["cost_usd"] == "0.0085"
    assert fitted["training"]["accuracy"] == 1.0
    assert "refused" in out.read_text()
