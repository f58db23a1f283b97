"""Enqueueing by name from the threads of a threaded web worker."""

import subprocess
import sys

from django.conf import settings

# A fresh process, so no tasks module is imported yet: eight threads ask at once.
FIRST_LOOKUPS_AT_ONCE = """
import django, threading
django.setup()
from iofold.lib.tasks import registered_task
barrier, errors = threading.Barrier(8), []
def look_up():
    barrier.wait()
    try:
        registered_task("evals.tasks.run_eval_task")
    except Exception as exc:
        errors.append(repr(exc))
threads = [threading.Thread(target=look_up) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(errors)
"""


def test_threads_enqueueing_at_once_in_a_fresh_process_all_find_the_task():
    # Before the lock, most threads got NotRegistered while the first one imported.
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-c", FIRST_LOOKUPS_AT_ONCE],
            cwd=settings.BASE_DIR,
            capture_output=True,
            text=True,
            timeout=60,
            env={"DJANGO_SETTINGS_MODULE": "iofold.settings", "PATH": "/usr/bin:/bin"},
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.strip().splitlines()[-1] == "[]"
