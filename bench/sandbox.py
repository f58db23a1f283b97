"""Benchmark the sandbox: batch wall time against an in-process loop, and jail start-up.

The floor is the same eval function called on the same trace dicts in a plain loop in this
process: no encoding, no I/O, no fresh globals. The sandboxed figures include everything
`sandbox.run` does (validation, JSON encoding, jails, decoding, Result objects); the CPU
figure adds this process's CPU time to that of the jails (which may run in parallel).
`run_json` is measured on the same traces encoded beforehand (what a caller holding the
JSON text from the database would pass), with the encoding time shown separately.

Run: .venv/bin/python bench/sandbox.py [--quick]
"""

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sandbox

EVAL = """
import json
import re

ERROR = re.compile(r"\\b(error|exception|traceback)\\b", re.I)


def eval_fn(trace):
    output = trace.get("output") or ""
    if not isinstance(output, str):
        output = json.dumps(output)
    failed = [s for s in trace.get("steps", []) if s.get("error")]
    if failed:
        return False, f"{len(failed)} step(s) failed"
    if ERROR.search(output):
        return False, "the answer mentions an error"
    if len(output) < 20:
        return False, "the answer is too short"
    return True, "complete answer without errors"
"""
TRIVIAL = "def eval_fn(trace):\n    return True, ''\n"


def make_trace(i):
    return {
        "id": f"trace-{i}",
        "name": "support-agent",
        "timestamp": "2026-01-01T12:00:00Z",
        "input": {"question": f"How do I reset my password? (ticket {i})"},
        "output": "Open Settings, choose Security, then Reset password. " * (1 + i % 3),
        "steps": [
            {
                "id": f"s{i}-{j}",
                "parent_id": None,
                "type": "llm" if j % 2 == 0 else "tool",
                "name": "answer" if j % 2 == 0 else "kb_search",
                "input": {"q": "reset password"},
                "output": {"text": "Settings > Security"},
                "error": "timeout" if (i % 17 == 0 and j == 1) else None,
                "model": "gpt-4o-mini",
                "usage": {"input": 120, "output": 40},
                "start_time": None,
                "end_time": None,
                "metadata": {},
            }
            for j in range(3)
        ],
        "metadata": {"env": "prod"},
        "tags": ["support"],
        "user_id": f"u{i % 50}",
        "session_id": None,
        "latency_ms": 850.0 + i % 100,
        "cost": 0.0012,
    }


def floor(traces):
    namespace = {}
    exec(compile(EVAL, "<eval>", "exec"), namespace)  # noqa: S102 - trusted benchmark code
    fn = namespace["eval_fn"]
    started = time.perf_counter()
    verdicts = [fn(t) for t in traces]
    return time.perf_counter() - started, verdicts


def cpu_seconds():
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def best_of(repeats, fn):
    times = []
    cpu = []
    for _ in range(repeats):
        started, cpu_started = time.perf_counter(), cpu_seconds()
        value = fn()
        times.append(time.perf_counter() - started)
        cpu.append(cpu_seconds() - cpu_started)
    return min(times), statistics.median(times), value, min(cpu)


def startup_breakdown(repeats):
    """Time the parts of a start: the interpreter alone, and nsjail around it."""
    import re
    import subprocess
    import tempfile

    from sandbox import config, jail

    settings = config.get_settings()
    command = jail.nsjail_command(settings, settings.limits)
    text = Path(command[2]).read_text()
    python = jail._layout(settings.python_path)["real"]
    bare = re.sub(r"exec_bin \{.*?\n\}\n", "", text, flags=re.S)
    args = "".join(f'  arg: "{arg}"\n' for arg in ("-I", "-S", "-c", "pass"))
    bare += f'exec_bin {{\n  path: "{python}"\n{args}}}\n'
    rows = []
    with tempfile.NamedTemporaryFile("w", suffix=".cfg") as handle:
        handle.write(bare)
        handle.flush()
        for label, key, args in (
            (
                "python3 -I -S -c pass, no jail",
                "python_start_ms",
                [python, "-I", "-S", "-c", "pass"],
            ),
            (
                "the same inside the jail",
                "jailed_python_start_ms",
                [command[0], "--config", handle.name],
            ),
        ):
            times = []
            for _ in range(repeats):
                started = time.perf_counter()
                subprocess.run(args, capture_output=True, env={}, check=True)
                times.append(time.perf_counter() - started)
            rows.append((label, key, (min(times), statistics.median(times))))
    return rows


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer repeats, under a minute")
    args = parser.parse_args()
    repeats = 3 if args.quick else 7
    sandbox.configure()
    sandbox.check()
    figures = {}
    print("sandbox benchmark (nsjail backend, one eval over realistic trace dicts)")
    for n in (1_000, 10_000):
        traces = [make_trace(i) for i in range(n)]
        floor_s = min(floor(traces)[0] for _ in range(repeats))
        best, median, results, cpu = best_of(
            repeats, lambda traces=traces: sandbox.run(EVAL, traces)
        )
        _, verdicts = floor(traces)
        assert [r.passed for r in results] == [v[0] for v in verdicts]
        ratio = best / floor_s
        print(
            f"  {n:>6} traces: sandboxed {best * 1000:8.1f} ms (median {median * 1000:.1f}, "
            f"CPU {cpu * 1000:.0f} ms), in-process loop {floor_s * 1000:7.2f} ms, "
            f"ratio {ratio:.1f}x, {best / n * 1e6:.1f} us/trace"
        )
        encode_s, _, encoded, _ = best_of(
            repeats, lambda traces=traces: [json.dumps(t, separators=(",", ":")) for t in traces]
        )
        best_json, _, results, _ = best_of(
            repeats, lambda encoded=encoded: sandbox.run_json(EVAL, encoded)
        )
        assert [r.passed for r in results] == [v[0] for v in verdicts]
        print(
            f"  {n:>6} traces as JSON text (run_json): {best_json * 1000:8.1f} ms, "
            f"ratio {best_json / floor_s:.1f}x (encoding them here took {encode_s * 1000:.1f} ms)"
        )
        figures[f"sandboxed_ms_{n}"] = round(best * 1000, 1)
        figures[f"floor_ms_{n}"] = round(floor_s * 1000, 2)
        figures[f"ratio_{n}"] = round(ratio, 1)
        figures[f"cpu_ms_{n}"] = round(cpu * 1000, 1)
        figures[f"run_json_ratio_{n}"] = round(best_json / floor_s, 1)
    starts = [best_of(1, lambda: sandbox.run(TRIVIAL, [{}]))[0] for _ in range(repeats * 5)]
    start_ms = min(starts) * 1000
    print(
        f"  start one jail + trivial eval: {start_ms:.1f} ms best, "
        f"{statistics.median(starts) * 1000:.1f} ms median over {len(starts)}"
    )
    figures["jail_start_ms"] = round(start_ms, 1)
    figures["jail_start_median_ms"] = round(statistics.median(starts) * 1000, 1)
    for label, key, command in startup_breakdown(repeats * 5):
        print(f"  {label}: {command[0] * 1000:.1f} ms best, {command[1] * 1000:.1f} ms median")
        figures[key] = round(command[0] * 1000, 1)
    print(f"reproduce: .venv/bin/python bench/sandbox.py{' --quick' if args.quick else ''}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
