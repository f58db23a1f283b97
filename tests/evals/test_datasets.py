import io
import json
from pathlib import Path

import pytest

from evals.datasets import DatasetError, read_labelled_jsonl, visible_trace

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "xstest.jsonl"


def _row(**overrides):
    row = {
        "id": "t1",
        "input": {"prompt": "hi"},
        "output": {"completion": "hello"},
        "steps": [{"type": "llm", "name": "m", "input": "hi", "output": "hello", "error": None}],
        "metadata": {"source_id": "v2-1", "prompt_is_unsafe": False, "prompt_type": "x"},
        "label": "positive",
        "label_detail": {"final_label": "1_full_compliance"},
        "label_source": "human",
        "task": "no_refusal",
    }
    row.update(overrides)
    return row


def _stream(*lines):
    return io.StringIO(
        "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines)
    )


def test_reads_examples_with_label_note_task_and_group():
    examples = read_labelled_jsonl(
        _stream(_row(note="polite"), _row(id="t2", label="negative")),
        group_key="metadata.source_id",
    )
    assert [e.label for e in examples] == ["positive", "negative"]
    assert examples[0].note == "polite"
    assert examples[0].task == "no_refusal"
    assert examples[0].group == "v2-1"
    assert examples[0].is_good is True and examples[1].is_good is False


def test_group_defaults_to_trace_id():
    (example,) = read_labelled_jsonl(_stream(_row()))
    assert example.group == "t1"


def test_generator_view_drops_answer_and_leaky_metadata():
    (example,) = read_labelled_jsonl(_stream(_row(note="n")))
    trace = example.trace
    for key in ("label", "label_detail", "label_source", "task", "note"):
        assert key not in trace
    assert trace["metadata"] == {"source_id": "v2-1"}
    assert trace["output"] == {"completion": "hello"}
    assert visible_trace({"id": "x", "metadata": {"instruction_kwargs": [1]}}) == {
        "id": "x",
        "metadata": {},
    }


def test_minimal_row_needs_only_id_and_label():
    (example,) = read_labelled_jsonl(_stream({"id": "a", "label": "neutral"}))
    assert example.label == "neutral"
    assert example.is_good is None


def test_labels_read_as_the_pages_word_them():
    # A file labelled the way the product words labels (the eval set's import takes it)
    # fits too: good and bad are the stored positive and negative.
    examples = read_labelled_jsonl(
        _stream({"id": "a", "label": "good"}, {"id": "b", "label": "bad"}, _row(id="c"))
    )
    assert [e.label for e in examples] == ["positive", "negative", "positive"]
    assert [e.is_good for e in examples] == [True, False, True]


def test_task_filter_keeps_one_task():
    examples = read_labelled_jsonl(
        _stream(_row(), _row(task="appropriate_response")), task="appropriate_response"
    )
    assert [e.task for e in examples] == ["appropriate_response"]


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ("{not json", "invalid JSON"),
        ("[1, 2]", "expected a JSON object"),
        (json.dumps({"label": "positive"}), "missing field 'id'"),
        (json.dumps({"id": "x"}), "missing field 'label'"),
        (
            json.dumps({"id": "x", "label": "thumbs_up"}),
            "'thumbs_up' is not one of good, bad, neutral",
        ),
        (json.dumps({"id": "x", "label": "positive", "steps": {}}), "'steps' must be a list"),
        (json.dumps({"id": "x", "label": "positive", "steps": [1]}), "step 0 is not an object"),
        (json.dumps({"id": "x", "label": "positive", "note": 3}), "'note' must be a string"),
    ],
)
def test_bad_line_is_named(bad_line, message):
    # Line 3 after a good line and a blank one: blank lines still count.
    with pytest.raises(DatasetError, match=message) as caught:
        read_labelled_jsonl(_stream(_row(), "", bad_line))
    assert caught.value.line == 3
    assert str(caught.value).startswith("line 3: ")


def test_duplicate_id_names_both_lines():
    with pytest.raises(DatasetError, match="first on line 1") as caught:
        read_labelled_jsonl(_stream(_row(), _row()))
    assert caught.value.line == 2


def test_reads_a_path_and_reports_a_missing_file(tmp_path):
    path = tmp_path / "set.jsonl"
    path.write_text(json.dumps(_row()) + "\n", encoding="utf-8")
    assert len(read_labelled_jsonl(path)) == 1
    assert len(read_labelled_jsonl(str(path))) == 1
    with pytest.raises(DatasetError, match="cannot read"):
        read_labelled_jsonl(tmp_path / "missing.jsonl")


@pytest.mark.skipif(not SHARED.exists(), reason="shared benchmark data not present")
def test_reads_the_shared_xstest_file():
    examples = read_labelled_jsonl(SHARED, task="no_refusal", group_key="metadata.source_id")
    assert len(examples) == 900
    assert sum(e.label == "positive" for e in examples) == 331
    assert all("prompt_is_unsafe" not in e.trace["metadata"] for e in examples)
