"""Benchmark LLM judges: the jail's call overhead, a hybrid's judge share, the cache.

1. Overhead: N judge calls to the loopback fake LLM (tests/fakes/llm_server.py, answering
   after a fixed delay that stands in for the provider) made (a) directly with the
   OpenAI SDK from 8 threads, and (b) from eval code in the sandbox (nsjail) through
   the runner's judge channel, 8 jails in flight. Ratio b / a; goal <= 1.2 at 1,000.
2. Hybrid judge share: on ../shared/data task sets, the offline synthesiser fits a code
   eval on a training split; the hybrid keeps the code verdicts the training labels back
   and sends the rest to the judge. Share of held-out traces that reach the judge.
3. Cache: the judge eval run twice through evals.judging (JudgeSession, PostgreSQL
   cache, database created and dropped per run); hit rate of the second run.

    python bench/judges.py [--quick] [--traces N] [--delay-ms D]

Last line of output: one JSON object of the headline figures.
"""

import argparse
import json
import os
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Appended: bench/sandbox.py must not shadow the sandbox package.
sys.path.append(str(ROOT / "bench"))

from _django import find_data, run_on_scratch_database  # noqa: E402

import sandbox  # noqa: E402
from sandbox.calls import CallRequest  # noqa: E402
from tests.fakes.llm_server import FakeLLMServer  # noqa: E402

# Everything from evals/ is imported once Django is set up on the scratch database.

EVAL = """from iofold_eval import judge

def eval_fn(trace):
    answer = judge("Is the reply helpful?", context=str(trace["output"]))
    return answer == "yes", answer
"""
IN_FLIGHT = 8
SUITES = (
    ("xstest.jsonl", "no_refusal", "metadata.source_id"),
    ("xstest.jsonl", "appropriate_response", "metadata.source_id"),
)


def rule(request) -> str:
    return "no" if "cannot" in request.prompt_text else "yes"


def provider(server: FakeLLMServer):
    from evals.generation.providers.openai import OpenAIProvider

    return OpenAIProvider(
        api_key="bench-key",
        model="gpt-4.1-mini",
        base_url=server.openai_base_url,
        max_retries=0,
        max_tokens=16,
        temperature=0.0,
        timeout=30,
    )


def overhead(server: FakeLLMServer, count: int) -> dict:
    """Direct SDK calls from 8 threads against the same calls from eval code in the jail."""
    client = provider(server)
    prompts = [f"trace {i}: {'I cannot' if i % 3 == 0 else 'Sure'}" for i in range(count)]

    def direct_call(text: str) -> str:
        return client.complete(system="judge", messages=[{"role": "user", "content": text}]).text

    client.complete(system="warm", messages=[{"role": "user", "content": "up"}])
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=IN_FLIGHT) as pool:
        direct = list(pool.map(direct_call, prompts))
    direct_s = time.perf_counter() - started

    def handler(request: CallRequest, index: int) -> str:
        answer = direct_call(request.context)
        return "yes" if answer.startswith("yes") else "no"

    limits = sandbox.Limits(call_concurrency=IN_FLIGHT)
    sandbox.run(EVAL, [{"output": "warm"}], limits, calls=handler)
    before = server.calls
    started = time.perf_counter()
    results = sandbox.run(EVAL, [{"output": p} for p in prompts], limits, calls=handler)
    jail_s = time.perf_counter() - started
    assert server.calls - before == count, "every trace made exactly one call"
    assert all(r.error is None for r in results), results[0]
    assert sum(r.passed for r in results) == sum(a == "yes" for a in direct)
    return {
        "traces": count,
        "in_flight": IN_FLIGHT,
        "direct_s": round(direct_s, 3),
        "jail_s": round(jail_s, 3),
        "ratio": round(jail_s / direct_s, 3),
    }


def hybrid_share(quick: bool) -> dict:
    """Share of held-out traces a fitted hybrid sends to the judge, per suite."""
    from evals.datasets import read_labelled_jsonl
    from evals.judging.templates import hybrid_code, judge_code, trusted_verdicts
    from evals.synthesis import fit

    shares = {}
    data = find_data()
    for filename, task, group_key in SUITES[:1] if quick else SUITES:
        examples = read_labelled_jsonl(data / filename, task=task, group_key=group_key)
        groups = sorted({e.group for e in examples})
        test_groups = set(groups[::5])
        train = [e for e in examples if e.group not in test_groups]
        test = [e for e in examples if e.group in test_groups]
        if quick:
            train, test = train[:200], test[:100]
        fitted = fit(train)
        train_results = sandbox.run(fitted.code, [e.trace for e in train])
        pairs = [(e.label, r.passed) for e, r in zip(train, train_results, strict=True)]
        trusted = trusted_verdicts(pairs)
        judge = judge_code(
            criteria="", question="Is this trace good?", material="reply", examples=train[:40]
        )
        code = hybrid_code(code=fitted.code, judge=judge, trusted=trusted)
        asked = []

        def handler(request: CallRequest, index: int, asked=asked) -> str:
            asked.append(index)
            return "yes"

        sandbox.run(code, [e.trace for e in test], calls=handler)
        shares[f"{filename}:{task}"] = {
            "trusted_code_verdicts": trusted,
            "heldout": len(test),
            "sent_to_judge": len(asked),
            "judge_share": round(len(asked) / len(test), 3),
        }
    return shares


def cache_hit_rate(server: FakeLLMServer, count: int) -> dict:
    """Run a judge eval twice through evals.judging; hit rate of the second run."""
    from django.core.management import call_command

    from evals.generation.provider_settings import update_provider_settings
    from evals.judging.session import JudgeSession
    from workspaces.models import Workspace

    figures: dict = {}
    call_command("migrate", verbosity=0)
    workspace = Workspace.objects.create(name="bench", slug=f"bench-{uuid.uuid4().hex[:6]}")
    update_provider_settings(
        workspace=workspace,
        provider="openai",
        model="gpt-4.1-mini",
        base_url=server.openai_base_url,
        api_key="bench-key",
    )
    traces = [{"output": f"reply {i}"} for i in range(count)]
    for label in ("first", "second"):
        session = JudgeSession(workspace=workspace)
        before = server.calls
        session.run(lambda session=session: sandbox.run(EVAL, traces, calls=session.handle))
        figures[label] = {
            "provider_calls": server.calls - before,
            "cache_hits": session.total.cache_hits,
        }
    figures["hit_rate"] = round(figures["second"]["cache_hits"] / count, 3)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="under a minute")
    parser.add_argument("--traces", type=int, default=None)
    parser.add_argument("--delay-ms", type=float, default=50.0, help="the fake's answer time")
    args = parser.parse_args()
    count = args.traces or (200 if args.quick else 1000)
    # The fake listens on 127.0.0.1, which outbound connections may reach only when allowed.
    os.environ["IOFOLD_ALLOW_PRIVATE_HOSTS"] = "true"
    run_on_scratch_database(
        f"bench_judges_{uuid.uuid4().hex[:8]}", lambda: measure_all(args, count)
    )


def measure_all(args, count: int) -> None:
    sandbox.configure()
    with FakeLLMServer() as server:
        server.judge_rule = rule
        server.rule_delay = args.delay_ms / 1000
        over = overhead(server, count)
        print(
            f"overhead: {count} calls, {IN_FLIGHT} in flight, fake answers in "
            f"{args.delay_ms:g} ms: direct {over['direct_s']} s, through the jail "
            f"{over['jail_s']} s, ratio {over['ratio']} (goal <= 1.2)"
        )
        server.rule_delay = 0.0
        shares = hybrid_share(args.quick)
        for name, share in shares.items():
            print(
                f"hybrid {name}: code keeps {share['trusted_code_verdicts']} verdicts, "
                f"{share['sent_to_judge']} of {share['heldout']} held-out traces to the judge "
                f"({share['judge_share']:.0%})"
            )
        cache = cache_hit_rate(server, 50 if args.quick else 200)
        print(
            f"cache: first run {cache['first']['provider_calls']} calls, second run "
            f"{cache['second']['provider_calls']} calls, hit rate {cache['hit_rate']:.0%}"
        )
    command = "python bench/judges.py" + (" --quick" if args.quick else "")
    print(f"reproduce: {command}")
    print(
        json.dumps(
            {
                "overhead_ratio": over["ratio"],
                "traces": count,
                "in_flight": IN_FLIGHT,
                "direct_s": over["direct_s"],
                "jail_s": over["jail_s"],
                "hybrid_judge_share": {k: v["judge_share"] for k, v in shares.items()},
                "cache_hit_rate": cache["hit_rate"],
            }
        )
    )


if __name__ == "__main__":
    main()
