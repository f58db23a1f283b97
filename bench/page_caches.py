"""What each per-request cache saves a page, measured in one process with it on and off.

On a shared machine the CPU a request costs drifts with who else runs by more than these
caches save (tenths of a millisecond), so two runs of bench/pages.py, one per version of
the code, cannot tell them apart. Here one process alternates, round after round, between
the pages with none of the caches and with each added in turn: the user's memberships
(``workspaces.memberships``) and ``{% url %}`` (``iofold.lib.cached_url``). Each round
calls a page ``--per`` times through the whole WSGI handler (middleware, signals, session,
auth, template) with ``DEBUG`` off, on the workspace bench/load.py loads; reported: the
median over rounds of the CPU ms per request.

    python bench/page_caches.py [--quick] [--rounds 21] [--per 20] [--traces 2000]
    (PG_URL defaults to postgres://postgres@127.0.0.1:5432)

Last line of output: one JSON object.
"""

import argparse
import io
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.load import seed  # noqa: E402
from bench.pages import run_as_production  # noqa: E402


def _variants() -> dict:
    """Each variant: the functions the caches go through, cached or not."""
    from django.urls import reverse

    from iofold.lib import cached_url
    from workspaces import access
    from workspaces.models import Membership

    def memberships_read(user):
        return list(
            Membership.objects.for_user(user)
            .select_related("workspace")
            .order_by("workspace__name", "workspace_id")
        )

    def reversed_each_time(view_name, args, kwargs, current_app, script_prefix, resolver):
        return reverse(view_name, args=args, kwargs=dict(kwargs), current_app=current_app)

    cached = (access.user_memberships, cached_url._reverse)
    plain = (memberships_read, reversed_each_time)
    return {"no caches": plain, "+ memberships": (cached[0], plain[1]), "+ url": cached}


def _use(variant) -> None:
    from iofold.lib import cached_url
    from workspaces import access

    access.user_memberships, cached_url._reverse = variant


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--per", type=int, default=20)
    parser.add_argument("--traces", type=int, default=2_000)
    parser.add_argument(
        "--quick", action="store_true", help="5 rounds of 5 requests on 500 traces: under a minute"
    )
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.per, args.traces = 5, 5, 500
    db_name = f"iofold_bench_page_caches_{os.getpid()}_{int(time.time())}"
    result: dict = {}

    def body() -> None:
        from django.core.management import call_command
        from django.core.wsgi import get_wsgi_application

        call_command("migrate", verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        ctx = seed(args.traces, args.traces // 5)
        app = get_wsgi_application()
        w = f"/w/{ctx['slug']}"
        pages = {
            "trace list": f"{w}/traces/",
            "trace detail": f"{w}/traces/{ctx['trace_ids'][len(ctx['trace_ids']) // 2]}/",
            "review next": f"{w}/traces/eval-sets/{ctx['eval_set']}/review/",
            "matrix": f"{w}/evals/sets/{ctx['eval_set']}/matrix/",
        }

        def get(path: str) -> None:
            environ = {
                "REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "",
                "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80", "HTTP_HOST": "127.0.0.1",
                "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
                "HTTP_COOKIE": f"sessionid={ctx['sessions'][0]}",
                "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(), "wsgi.errors": sys.stderr,
            }  # fmt: skip
            statuses = []
            response = app(environ, lambda status, headers: statuses.append(status))
            b"".join(response)
            response.close()
            assert statuses[0].startswith("200"), (path, statuses[0])

        variants = _variants()
        print(f"{'page':<14}" + "".join(f"{name:>15}" for name in variants))
        for page, path in pages.items():
            samples: dict[str, list[float]] = {name: [] for name in variants}
            for _ in range(args.rounds):
                for name, variant in variants.items():
                    _use(variant)
                    get(path)  # warm: the caches filled, as for a user browsing
                    start = time.process_time()
                    for _ in range(args.per):
                        get(path)
                    samples[name].append((time.process_time() - start) * 1000 / args.per)
            result[page] = {name: round(statistics.median(s), 2) for name, s in samples.items()}
            print(f"{page:<14}" + "".join(f"{ms:>15}" for ms in result[page].values()))
        _use(variants["+ url"])
        result["load_average"] = os.getloadavg()

    run_as_production(db_name, body)
    print("reproduce: .venv/bin/python bench/page_caches.py " + " ".join(sys.argv[1:]))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
