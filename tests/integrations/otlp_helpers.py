"""Spans made by the real OpenTelemetry SDK, kept in memory until a test exports them."""

from __future__ import annotations

import json

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from tests.factories import MembershipFactory, UserFactory
from workspaces.services import issue_token


def api_token(workspace, role: str = "member") -> str:
    user = MembershipFactory(workspace=workspace, user=UserFactory(), role="admin").user
    return issue_token(workspace=workspace, name="otel", created_by=user, role=role)[1]


class Recorder:
    """A tracer provider whose finished spans collect in memory, in the order they end."""

    def __init__(self, service: str = "support-bot") -> None:
        self.memory = InMemorySpanExporter()
        self.provider = TracerProvider(resource=Resource.create({"service.name": service}))
        self.provider.add_span_processor(SimpleSpanProcessor(self.memory))
        self.tracer = self.provider.get_tracer("tests.otlp", "1.0")

    def take(self):
        spans = list(self.memory.get_finished_spans())
        self.memory.clear()
        return spans


def protobuf_body(spans) -> bytes:
    """Encode spans exactly as the OTLP/HTTP exporter does."""
    return encode_spans(spans).SerializePartialToString()


def semconv_agent_trace(recorder: Recorder, *, answer: str = "Your refund is on its way."):
    """An agent run in the current GenAI conventions: agent → chat → tool → chat."""
    tracer = recorder.tracer
    with tracer.start_as_current_span("invoke_agent support") as agent:
        agent.set_attribute("gen_ai.operation.name", "invoke_agent")
        agent.set_attribute("gen_ai.agent.name", "support")
        agent.set_attribute("gen_ai.conversation.id", "conv-42")
        agent.set_attribute("gen_ai.provider.name", "openai")
        agent.set_attribute(
            "gen_ai.input.messages",
            json.dumps([{"role": "user", "parts": [{"type": "text", "content": "Refund?"}]}]),
        )
        with tracer.start_as_current_span("chat gpt-5") as chat:
            chat.set_attribute("gen_ai.operation.name", "chat")
            chat.set_attribute("gen_ai.provider.name", "openai")
            chat.set_attribute("gen_ai.request.model", "gpt-5")
            chat.set_attribute("gen_ai.response.model", "gpt-5-2026-01-01")
            chat.set_attribute("gen_ai.usage.input_tokens", 120)
            chat.set_attribute("gen_ai.usage.output_tokens", 30)
            chat.set_attribute(
                "gen_ai.system_instructions",
                json.dumps([{"type": "text", "content": "You are a support agent."}]),
            )
            chat.set_attribute(
                "gen_ai.input.messages",
                json.dumps([{"role": "user", "parts": [{"type": "text", "content": "Refund?"}]}]),
            )
            chat.set_attribute(
                "gen_ai.output.messages",
                json.dumps(
                    [
                        {
                            "role": "assistant",
                            "parts": [
                                {
                                    "type": "tool_call",
                                    "id": "call_1",
                                    "name": "lookup_order",
                                    "arguments": {"order": 7},
                                }
                            ],
                            "finish_reason": "tool_call",
                        }
                    ]
                ),
            )
        with tracer.start_as_current_span("execute_tool lookup_order") as tool:
            tool.set_attribute("gen_ai.operation.name", "execute_tool")
            tool.set_attribute("gen_ai.tool.name", "lookup_order")
            tool.set_attribute("gen_ai.tool.call.id", "call_1")
            tool.set_attribute("gen_ai.tool.call.arguments", '{"order": 7}')
            tool.set_attribute("gen_ai.tool.call.result", '{"status": "refunded"}')
        with tracer.start_as_current_span("chat gpt-5") as chat:
            chat.set_attribute("gen_ai.operation.name", "chat")
            chat.set_attribute("gen_ai.request.model", "gpt-5")
            chat.set_attribute(
                "gen_ai.output.messages",
                json.dumps(
                    [
                        {
                            "role": "assistant",
                            "parts": [{"type": "text", "content": answer}],
                            "finish_reason": "stop",
                        }
                    ]
                ),
            )
        agent.set_attribute(
            "gen_ai.output.messages",
            json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": answer}]}]),
        )
    return agent.get_span_context().trace_id


def older_genai_trace(recorder: Recorder):
    """An OpenLLMetry-style workflow with a chat span in indexed prompt/completion attributes."""
    tracer = recorder.tracer
    with tracer.start_as_current_span("support.workflow") as workflow:
        workflow.set_attribute("traceloop.span.kind", "workflow")
        workflow.set_attribute("traceloop.entity.input", '{"question": "Where is order 7?"}')
        workflow.set_attribute("traceloop.entity.output", '"It shipped."')
        with tracer.start_as_current_span("openai.chat") as chat:
            chat.set_attribute("llm.request.type", "chat")
            chat.set_attribute("gen_ai.system", "OpenAI")
            chat.set_attribute("gen_ai.request.model", "gpt-4o")
            chat.set_attribute("gen_ai.prompt.0.role", "system")
            chat.set_attribute("gen_ai.prompt.0.content", "Be brief.")
            chat.set_attribute("gen_ai.prompt.1.role", "user")
            chat.set_attribute("gen_ai.prompt.1.content", "Where is order 7?")
            chat.set_attribute("gen_ai.completion.0.role", "assistant")
            chat.set_attribute("gen_ai.completion.0.content", "It shipped.")
            chat.set_attribute("gen_ai.completion.0.finish_reason", "stop")
            chat.set_attribute("gen_ai.usage.prompt_tokens", 20)
            chat.set_attribute("gen_ai.usage.completion_tokens", 4)
    return workflow.get_span_context().trace_id


def openinference_trace(recorder: Recorder):
    """An OpenInference agent: a chain with an LLM span and a failing tool."""
    tracer = recorder.tracer
    with tracer.start_as_current_span("agent") as chain:
        chain.set_attribute("openinference.span.kind", "AGENT")
        chain.set_attribute("input.value", "Cancel my order")
        chain.set_attribute("output.value", '{"answer": "Cancelled."}')
        chain.set_attribute("input.mime_type", "text/plain")
        chain.set_attribute("session.id", "sess-9")
        chain.set_attribute("user.id", "user-3")
        chain.set_attribute("tag.tags", ["prod", "support"])
        chain.set_attribute("metadata", '{"tenant": "acme"}')
        with tracer.start_as_current_span("ChatCompletion") as llm:
            llm.set_attribute("openinference.span.kind", "LLM")
            llm.set_attribute("llm.model_name", "claude-sonnet")
            llm.set_attribute("llm.provider", "anthropic")
            llm.set_attribute("llm.input_messages.0.message.role", "user")
            llm.set_attribute("llm.input_messages.0.message.content", "Cancel my order")
            llm.set_attribute("llm.output_messages.0.message.role", "assistant")
            llm.set_attribute(
                "llm.output_messages.0.message.tool_calls.0.tool_call.function.name",
                "cancel_order",
            )
            llm.set_attribute(
                "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments",
                '{"order": 7}',
            )
            llm.set_attribute("llm.token_count.prompt", 11)
            llm.set_attribute("llm.token_count.completion", 5)
        with tracer.start_as_current_span("cancel_order") as tool:
            tool.set_attribute("openinference.span.kind", "TOOL")
            tool.set_attribute("tool.name", "cancel_order")
            tool.set_attribute("tool.parameters", '{"order": 7}')
            tool.record_exception(RuntimeError("order already shipped"))
            tool.set_status(Status(StatusCode.ERROR))
    return chain.get_span_context().trace_id
