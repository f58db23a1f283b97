"""Benchmark the OTLP/HTTP receiver: spans per second into POST /v1/traces, one server process.

The server is gunicorn with one sync worker (one process, one thread) on a database made
for this run: a SQLite file in a temporary directory (default), or with ``--postgres`` a
PostgreSQL database created and dropped here (``PG_URL``, default
postgres://postgres@127.0.0.1:5432). The client is this process: spans are made with the
real OpenTelemetry SDK and encoded with the OTLP/HTTP exporter's own encoder before the
clock starts, then posted one request after another (as the SDK's batch processor does),
so the figure is the receiver's: decode, normalise, merge, upsert, answer. Beside spans/s
each scenario reports the CPU milliseconds per 1,000 spans that the server process (and,
with ``--postgres``, the database's backend) spent: unlike spans/s, they hardly depend on
what else shares the machine.

Scenarios (each trace has 8 spans: agent, 3 chat, 3 tool, 1 retrieval; GenAI attributes
with realistic message sizes):
- ``whole``: every trace arrives in one request (512 spans a request, the SDK default);
- ``split``: every trace arrives in two requests (children first, then the rest), so
  half the requests merge spans into stored traces;
- ``gzip``: ``whole`` with gzip bodies.
A final check exports one trace with the real ``OTLPSpanExporter`` and expects SUCCESS.

Run: .venv/bin/python bench/otlp.py [--quick] [--spans N] [--postgres]
"""

import argparse
import gzip
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PG_URL = os.environ.get("PG_URL", "postgres://postgres@127.0.0.1:5432")
BATCH = 512  # BatchSpanProcessor's default max_export_batch_size
SPANS_PER_TRACE = 8
GOAL = 5000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_traces(count: int, seed: str):
    """Return ``count`` traces of SDK spans, each a list in end order (root last)."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "bench-" + seed}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("bench.otlp")
    question = "Where is my order? " * 10
    answer = "Your order shipped yesterday and arrives on Friday. " * 6
    traces = []
    for n in range(count):
        with tracer.start_as_current_span("invoke_agent support") as agent:
            agent.set_attribute("gen_ai.operation.name", "invoke_agent")
            agent.set_attribute("gen_ai.conversation.id", f"conv-{n % 50}")
            for turn in range(3):
                with tracer.start_as_current_span("chat gpt-5") as chat:
                    chat.set_attribute("gen_ai.operation.name", "chat")
                    chat.set_attribute("gen_ai.provider.name", "openai")
                    chat.set_attribute("gen_ai.request.model", "gpt-5")
                    chat.set_attribute("gen_ai.usage.input_tokens", 300 + turn)
                    chat.set_attribute("gen_ai.usage.output_tokens", 80)
                    chat.set_attribute(
                        "gen_ai.input.messages",
                        json.dumps(
                            [{"role": "user", "parts": [{"type": "text", "content": question}]}]
                        ),
                    )
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
                with tracer.start_as_current_span("execute_tool lookup_order") as tool:
                    tool.set_attribute("gen_ai.operation.name", "execute_tool")
                    tool.set_attribute("gen_ai.tool.name", "lookup_order")
                    tool.set_attribute("gen_ai.tool.call.arguments", json.dumps({"order": n}))
                    tool.set_attribute("gen_ai.tool.call.result", '{"status": "shipped"}')
            with tracer.start_as_current_span("retrieval kb") as retrieval:
                retrieval.set_attribute("gen_ai.operation.name", "retrieval")
        traces.append(memory.get_finished_spans())
        memory.clear()
    return traces


def bodies_for(traces, scenario: str) -> tuple[list[bytes], int]:
    """Return the request bodies of a scenario (encoded by the exporter's encoder) and spans."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    if scenario == "split":
        half = SPANS_PER_TRACE // 2
        per_trace = BATCH // SPANS_PER_TRACE * 2  # traces whose halves fill one request
        requests = []
        for start in range(0, len(traces), per_trace):
            group = traces[start : start + per_trace]
            requests.append([s for t in group for s in t[:half]])
            requests.append([s for t in group for s in t[half:]])
    else:
        flat = [s for t in traces for s in t]
        requests = [flat[i : i + BATCH] for i in range(0, len(flat), BATCH)]
    bodies = [encode_spans(r).SerializePartialToString() for r in requests]
    if scenario == "gzip":
        bodies = [gzip.compress(b, compresslevel=6) for b in bodies]
    return bodies, sum(len(r) for r in requests)


def run(args) -> dict:
    import requests

    tmp = Path(tempfile.mkdtemp(prefix="iofold-bench-otlp-"))
    db_name = f"iofold_bench_otlp_{secrets.token_hex(4)}"
    if args.postgres:
        import psycopg

        with psycopg.connect(f"{PG_URL}/postgres", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {db_name}")
        database_url = f"{PG_URL}/{db_name}"
    else:
        database_url = f"sqlite:///{tmp / 'bench.sqlite3'}"
    from cryptography.fernet import Fernet

    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "IOFOLD_VAR_DIR": str(tmp),
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "IOFOLD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "false",
        "CELERY_BROKER_URL": "filesystem://",
    }
    server = None
    try:
        py = sys.executable
        subprocess.run([py, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env,
                       check=True)  # fmt: skip
        token = subprocess.run(
            [py, "-c", _ISSUE_TOKEN], cwd=ROOT, env=env, check=True, capture_output=True, text=True
        ).stdout.strip()
        port = _free_port()
        server = subprocess.Popen(
            [py, "-m", "gunicorn", "iofold.wsgi", "-b", f"127.0.0.1:{port}", "-w", "1",
             "--threads", "1", "--log-level", "warning", "--timeout", "120"],
            cwd=ROOT, env=env, stderr=(tmp / "server.log").open("w"), start_new_session=True,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}/v1/traces"
        session = requests.Session()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-protobuf"}
        for _ in range(100):
            try:
                session.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
                break
            except requests.RequestException:  # not listening yet, or still importing
                time.sleep(0.1)

        trace_count = args.spans // SPANS_PER_TRACE
        results = {}
        # Warm up: imports, connections, the source created on the first request.
        warm, _ = bodies_for(make_traces(8, "warm"), "whole")
        for body in warm:
            session.post(url, data=body, headers=headers, timeout=60).raise_for_status()
        for scenario in ("whole", "split", "gzip"):
            traces = make_traces(trace_count, scenario)
            bodies, spans = bodies_for(traces, scenario)
            extra = {"Content-Encoding": "gzip"} if scenario == "gzip" else {}
            cpu_before = _server_cpu(server.pid, db_name if args.postgres else "")
            started = time.perf_counter()
            for body in bodies:
                response = session.post(url, data=body, headers={**headers, **extra}, timeout=120)
                if response.status_code != 200:
                    log = (tmp / "server.log").read_text()[-3000:]
                    raise SystemExit(f"{scenario}: HTTP {response.status_code}\n{log}")
            seconds = time.perf_counter() - started
            cpu = {
                key: round((after - cpu_before[key]) * 1e6 / spans)
                for key, after in _server_cpu(server.pid, db_name if args.postgres else "").items()
            }
            results[scenario] = {
                "spans": spans,
                "traces": trace_count,
                "requests": len(bodies),
                "body_kib": round(sum(map(len, bodies)) / len(bodies) / 1024, 1),
                "seconds": round(seconds, 2),
                "spans_per_second": round(spans / seconds),
                "cpu_ms_per_1000_spans": cpu,
            }
            print(
                f"{scenario:6} {spans:7d} spans in {len(bodies):4d} requests "
                f"({results[scenario]['body_kib']} KiB each): {seconds:6.2f} s, "
                f"{spans / seconds:8.0f} spans/s; CPU ms per 1,000 spans: "
                + ", ".join(f"{key} {ms}" for key, ms in cpu.items()),
                flush=True,
            )
        results["sdk_exporter_ok"] = _export_with_sdk(url, token)
        results["stored_traces"] = int(
            subprocess.run([py, "-c", _COUNT], cwd=ROOT, env=env, check=True,
                           capture_output=True, text=True).stdout.strip()
        )  # fmt: skip
        return results
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
        if args.postgres:
            import psycopg

            with psycopg.connect(f"{PG_URL}/postgres", autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {db_name} WITH (FORCE)")
        subprocess.run(["rm", "-rf", str(tmp)], check=False)


def _server_cpu(pgid: int, db_name: str) -> dict[str, float]:
    """CPU seconds so far of the server's processes and, if named, the database's backends."""
    from bench.load import cpu_seconds

    seconds = {"web": cpu_seconds(pgid)}
    if db_name:
        seconds["postgres"] = cpu_seconds(db_name=db_name)
    return seconds


def _export_with_sdk(url: str, token: str) -> bool:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import SpanExportResult

    exporter = OTLPSpanExporter(endpoint=url, headers={"Authorization": f"Bearer {token}"})
    ok = exporter.export(make_traces(1, "sdk")[0]) == SpanExportResult.SUCCESS
    exporter.shutdown()
    return ok


_ISSUE_TOKEN = """
import django, os
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "iofold.settings")
django.setup()
from accounts.models import User
from workspaces.services import create_workspace, issue_token
user = User.objects.create_user(email="bench@example.com", password="x")
workspace = create_workspace(name="Bench", owner=user)
print(issue_token(workspace=workspace, name="bench", created_by=user, role="member")[1])
"""
_COUNT = """
import django, os
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "iofold.settings")
django.setup()
from traces.models import Trace
print(Trace.objects.count())
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="about 10k spans a scenario")
    parser.add_argument("--spans", type=int, default=None, help="spans per scenario")
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL instead of SQLite")
    args = parser.parse_args()
    if args.spans is None:
        args.spans = 10_240 if args.quick else 51_200
    command = "python bench/otlp.py " + " ".join(sys.argv[1:])
    print(f"OTLP receive, one gunicorn process, {'PostgreSQL' if args.postgres else 'SQLite'}")
    results = run(args)
    slowest = min(r["spans_per_second"] for k, r in results.items() if isinstance(r, dict))
    print(f"slowest scenario: {slowest} spans/s (goal ≥ {GOAL})")
    print(f"reproduce: {command.strip()}")
    print(
        json.dumps(
            {
                "bench": "otlp",
                "database": "postgresql" if args.postgres else "sqlite",
                "workers": 1,
                **results,
                "min_spans_per_second": slowest,
                "goal_spans_per_second": GOAL,
                "meets_goal": slowest >= GOAL,
                "command": command.strip(),
            }
        )
    )


if __name__ == "__main__":
    main()
