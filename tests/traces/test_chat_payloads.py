"""A trace's or step's input and output shaped as chat messages read as a conversation."""

from html import unescape

from django.urls import reverse
from django.utils.html import strip_tags

from tests.traces.factories import EvalSetFactory, TraceFactory, trace_data
from traces import services


def url(name, workspace, **kwargs):
    return reverse(f"traces:{name}", kwargs={"slug": workspace.slug, **kwargs})


CHAT = [
    {"role": "system", "content": "You are a travel agent."},
    {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
]


def test_the_review_card_reads_a_chat_input_as_a_conversation(login, workspace, owner):
    trace = TraceFactory(
        workspace=workspace,
        data={**trace_data(1), "input": CHAT, "output": {"role": "assistant", "content": "Sunny."}},
    )
    eval_set = EvalSetFactory(workspace=workspace, created_by=owner)
    services.add_traces_to_eval_set(eval_set=eval_set, trace_ids=[trace.pk])
    html = login(owner).get(url("review", workspace, pk=eval_set.pk)).content.decode()
    card = unescape(strip_tags(html[html.index('data-testid="review-card"') :]))
    card = " ".join(card.split())
    # Who said what, in order, as text; the tool call by name with its arguments.
    assert "System You are a travel agent. User Weather in Paris?" in card
    assert 'get_weather{ "city": "Paris" }' in card
    assert "Tool · answers call_1" in card and "Assistant Sunny." in card
    assert '[{"role"' not in card.split("Raw JSON")[0]  # no raw JSON before the toggle


def test_the_trace_page_reads_chat_inputs_and_leaves_other_json_as_it_is(login, workspace, owner):
    data = trace_data(2)
    data["input"] = {"messages": CHAT[:2]}
    trace = TraceFactory(workspace=workspace, data=data)
    html = login(owner).get(url("detail", workspace, pk=trace.pk)).content.decode()
    assert html.count('data-testid="messages"') == 2  # the input, and the LLM step's input
    # The agent step's input is an object, not messages: JSON, as before.
    assert "&quot;question&quot;: &quot;Where is order 2?&quot;" in html


def test_chat_messages_reads_only_what_is_shaped_as_messages():
    from traces.conversations import chat_messages

    assert chat_messages({"question": "hi"}) is None
    assert chat_messages([{"role": "user", "content": "hi"}, "stray"]) is None
    assert chat_messages([]) is None
    calls = chat_messages([{"function": {"name": "lookup", "arguments": "not json"}}])
    assert calls[0]["role"] == "assistant"
    assert calls[0]["tool_calls"] == [{"name": "lookup", "arguments": "not json"}]


def test_a_long_chat_shows_its_first_messages_and_a_way_to_all(login, workspace, owner):
    chat = [{"role": "user", "content": f"message {n}"} for n in range(100)]
    trace = TraceFactory(workspace=workspace, data={**trace_data(3), "input": chat})
    client = login(owner)
    page = client.get(url("detail", workspace, pk=trace.pk)).content.decode()
    assert "Showing 40 of 100 messages." in page and "message 39<" in page
    assert "message 40<" not in page
    full = client.get(url("detail", workspace, pk=trace.pk), {"full": "1"}).content.decode()
    assert "message 99<" in full and "Showing 40" not in full


def test_show_all_on_the_review_card_opens_the_trace_page(login, workspace, owner):
    trace = TraceFactory(workspace=workspace, data={**trace_data(4), "output": "long " * 2000})
    eval_set = EvalSetFactory(workspace=workspace, created_by=owner)
    services.add_traces_to_eval_set(eval_set=eval_set, trace_ids=[trace.pk])
    html = login(owner).get(url("review", workspace, pk=eval_set.pk)).content.decode()
    # The review page shows no whole payloads: its own ?full=1 changed nothing.
    detail = url("detail", workspace, pk=trace.pk)
    assert f'Showing 4000 of 10000 characters. <a href="{detail}?full=1" target="_blank"' in html
