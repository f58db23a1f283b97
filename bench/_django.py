"""Shared set-up of the benchmarks that run Django in-process on a scratch PostgreSQL database."""

import math
import os
import statistics
from collections.abc import Callable
from pathlib import Path

PG_URL = os.environ.get("PG_URL", "postgres://postgres@127.0.0.1:5432")
ROOT = Path(__file__).resolve().parent.parent


def find_data() -> Path:
    """Return IOFOLD_BENCH_DATA, else the nearest shared/data beside a parent directory."""
    if os.environ.get("IOFOLD_BENCH_DATA"):
        return Path(os.environ["IOFOLD_BENCH_DATA"])
    for parent in ROOT.parents:
        if (parent / "shared" / "data").is_dir():
            return parent / "shared" / "data"
    return ROOT.parent / "shared" / "data"


def _admin_execute(sql: str) -> None:
    import psycopg

    with psycopg.connect(f"{PG_URL}/postgres", autocommit=True) as conn:
        conn.execute(sql)


def run_on_scratch_database(db_name: str, body: Callable[[], None]) -> None:
    """Create ``db_name``, set Django up on it, run ``body``, and drop the database."""
    _admin_execute(f"DROP DATABASE IF EXISTS {db_name} WITH (FORCE)")
    _admin_execute(f"CREATE DATABASE {db_name}")
    os.environ["DATABASE_URL"] = f"{PG_URL}/{db_name}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "iofold.settings")
    import django

    django.setup()
    try:
        body()
    finally:
        from django.db import connections

        connections.close_all()
        _admin_execute(f"DROP DATABASE IF EXISTS {db_name} WITH (FORCE)")


def percentiles(samples: list[float]) -> dict:
    """Return p50 and nearest-rank p95 of millisecond samples, rounded for printing."""
    samples = sorted(samples)
    return {
        "p50_ms": round(statistics.median(samples), 1),
        # Nearest rank: the smallest sample with at least 95 % of samples at or below it.
        "p95_ms": round(samples[max(0, math.ceil(len(samples) * 0.95) - 1)], 1),
    }
