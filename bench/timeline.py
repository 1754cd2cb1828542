"""Timeline benchmark: a million audit entries, then the pages people open, timed server side.

For SQLite and PostgreSQL: migrate a fresh database, create 20 servers through the panel's
models, bulk-append 1,000,000 entries continuing the hash chain (precomputed hashes; COPY on
PostgreSQL, executemany on SQLite; no index or trigger dropped), then time through the Flask
test client: the first page of /audit, a category-filtered page, an app's page, page 1,000 by
keyset; the same depth by keyset and by OFFSET at query level; and the print view of an app with
about 5,000 entries (after one full verification stored a checkpoint, which is timed too).

Every page is rendered afresh: the app runs with the timeline page cache off (INTERCITY_TIMELINE_CACHE=0),
so repeated requests measure the queries and the rendering, never a kept page (bench/http.py measures that).

BENCH_TIMELINE_ENTRIES scales the log down for a quick run; BENCH_TIMELINE_PENDING is how many of the newest
entries' operations stay pending (default 50: the first page polls, and is never kept by the page cache);
BENCH_DATABASE_URL names the PostgreSQL server (a database `intercity_bench_timeline_<pid>` is created there
and dropped after, or kept with BENCH_TIMELINE_KEEP=1).
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ENTRIES = int(os.environ.get("BENCH_TIMELINE_ENTRIES", "1000000"))
BACKENDS = os.environ.get("BENCH_TIMELINE_BACKENDS", "postgresql,sqlite").split(",")
# Keep the PostgreSQL database afterwards (to look at query plans).
KEEP = os.environ.get("BENCH_TIMELINE_KEEP") == "1"
# Only the request against the same rows rendered from memory (BENCH_TIMELINE_RENDER_ONLY=1).
RENDER_ONLY = os.environ.get("BENCH_TIMELINE_RENDER_ONLY") == "1"
# A database seeded by an earlier run with BENCH_TIMELINE_KEEP=1: measure it again without loading.
REUSE = os.environ.get("BENCH_TIMELINE_REUSE")
# The newest entries whose operations are still running when the log ends.
PENDING = int(os.environ.get("BENCH_TIMELINE_PENDING", "50"))
SERVERS = 20
APPS = 200
PAGE = 50
PRINT_APP = "shop-000"
# Roughly one app-level event in this many goes to PRINT_APP, so it ends with ~5,000 visible entries.
PRINT_SHARE = 85
# The process id keeps two runs on one PostgreSQL server (a shared machine) out of each other's way.
PG_NAME = f"intercity_bench_timeline_{os.getpid()}"
REPEAT = 15

TARGETS = {"first_page_ms": 50.0, "deep_ratio": 1.5, "print_ms": 2000.0, "render_ratio": 3.0}


def _config(url: str) -> dict:
    # Jobs go to a Redis queue nobody consumes: the generated log's pending operations must stay pending
    # (an in-process runner would try to reach the made-up servers while we measure).
    return {"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "bench-secret-key",
            "INTERCITY_ENCRYPTION_KEY": "bench-encryption-key-0123456789-abcdefghij", "TESTING": True,
            "WTF_CSRF_ENABLED": False, "RATELIMIT_ENABLED": False,
            "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"), "JOBS_IN_PROCESS": False,
            "JOBS_QUEUE": f"bench-timeline-{os.getpid()}"}


# -- the log ---------------------------------------------------------------------------------------

USERS = [f"dev{n}@example.com" for n in range(8)] + ["ops@example.com", "lead@example.com"]
ENV_KEYS = ["DATABASE_URL", "REDIS_URL", "SECRET_KEY_BASE", "SENTRY_DSN", "API_TOKEN", "SMTP_PASSWORD"]


def _apps() -> list[tuple[int, str, int, str]]:
    """(server id, server name, app id, app name): 10 apps on each of the 20 servers."""
    apps = []
    for n in range(APPS):
        server = n % SERVERS + 1
        # Every fifth app is an api-NNN: the word "api" then matches about 20% of entries (search figures).
        name = "shop-000" if n == 0 else f"api-{n:03d}" if n % 5 == 0 else f"app-{n:03d}"
        apps.append((server, f"srv-{server:02d}", n + 1, name))
    return apps


def events(total: int, first_op_id: int):
    """Entries as dicts (without seq/hashes) and operations, in commit order, until `total` entries."""
    apps = _apps()
    # The log ends now, 30 s between entries: the newest operations are the ones still pending.
    start = datetime.now(timezone.utc) - timedelta(seconds=30 * total)
    made, n, app_events, op_id = 0, 0, 0, first_op_id
    while made < total:
        n += 1
        when = start + timedelta(seconds=30 * made)
        user_id = n % len(USERS) + 1
        email = USERS[user_id - 1]
        kind = n % 10
        if kind in (8, 9):
            server = n % SERVERS + 1
            place = (server, f"srv-{server:02d}", None, None)
        else:
            app_events += 1
            place = apps[0] if app_events % PRINT_SHARE == 0 else apps[1 + app_events % (APPS - 1)]
        base = {"created_at": when, "actor_kind": "user", "actor_user_id": user_id, "actor_email": email,
                "actor_role": "member", "actor_os_user": None, "server_id": place[0], "server_name": place[1],
                "app_id": place[2], "app_name": place[3], "request_ip": "10.0.0.7",
                "request_user_agent": "Mozilla/5.0 (bench)", "request_id": f"{n:032x}", "caused_by": None}
        if kind <= 5:
            key = ENV_KEYS[n % len(ENV_KEYS)]
            verb = ("created", "updated", "updated", "deleted")[n % 4]
            diff = {"key": [None, key], "value_fingerprint": [None, f"{n:016x}"]} if verb != "deleted" else \
                {"key": [key, None]}
            entry = dict(base, action=f"env_var.{verb}", category="security", target_type="env_var",
                         target_id=str(n), target_label=key, diff=diff)
            op_kind, op_category = "env.apply", "security"
        elif kind == 6:
            host = f"www{n % 50}.example.com"
            entry = dict(base, action="domain.created", category="app", target_type="domain", target_id=str(n),
                         target_label=host, diff={"hostname": [None, host]})
            op_kind, op_category = "domains.apply", "app"
        elif kind == 7:
            entry = dict(base, action="app.restart_requested", category="app", target_type="operation",
                         target_id=None, target_label=f"restart the app ({place[3]})", diff={})
            op_kind, op_category = "app.restart", "app"
        elif kind == 8:
            entry = dict(base, action="deploy_key.created", category="security", target_type="deploy_key",
                         target_id=str(n), target_label=f"ci-{n % 30}", diff={"name": [None, f"ci-{n % 30}"]})
            op_kind, op_category = "deploy_keys.apply", "security"
        else:
            entry = dict(base, action="user.login", category="security", target_type="user",
                         target_id=str(user_id), target_label=email, diff={}, server_id=None, server_name=None)
            op_kind = None
        entry["diff"] = json.dumps(entry["diff"], sort_keys=True, separators=(",", ":"))
        if op_kind is None:
            entry["operation_id"] = None
            yield entry, None
            made += 1
            continue
        op_id += 1
        if entry["target_type"] == "operation":
            entry["target_id"] = str(op_id)
        entry["operation_id"] = op_id
        # The newest few stay pending. With none, an operation that is the log's last entry has ended too,
        # its outcome shown from its row (as a read's): no entry follows it.
        final = made + 2 < total - PENDING if PENDING else True
        # Pending work is being run by a live worker (heartbeat now): no "worker stalled" banner.
        status = ("failed" if n % 23 == 0 else "succeeded") if final else "running"
        operation = {"id": op_id, "kind": op_kind, "category": op_category, "server_id": place[0],
                     "server_name": place[1], "app_id": place[2], "app_name": place[3],
                     "scope": f"app:{place[2]}" if place[2] else f"server:{place[0]}", "payload": "{}",
                     "requested_by_id": user_id, "requested_by_email": email, "requested_by_role": "member",
                     "status": status, "attempts": 1, "warnings": "[]", "created_at": when, "updated_at": when,
                     "heartbeat_at": datetime.now(timezone.utc) if status == "running" else None}
        yield entry, operation
        made += 1
        if final and made < total:
            outcome = dict(base, created_at=when + timedelta(seconds=10), actor_kind="worker",
                           action=f"operation.{status}", category=op_category, target_type="operation",
                           target_id=str(op_id), target_label=op_kind, operation_id=op_id, request_ip=None,
                           request_user_agent=None, request_id=None,
                           diff=json.dumps({"status": [None, status]}, separators=(",", ":")))
            yield outcome, None
            made += 1


ENTRY_COLUMNS = ("seq", "created_at", "actor_kind", "actor_user_id", "actor_email", "actor_role", "actor_os_user",
                 "action", "category", "server_id", "server_name", "app_id", "app_name", "target_type", "target_id",
                 "target_label", "diff", "request_ip", "request_user_agent", "request_id", "caused_by",
                 "operation_id", "prev_hash", "hash")
OP_COLUMNS = ("id", "kind", "category", "server_id", "server_name", "app_id", "app_name", "scope", "payload",
              "requested_by_id", "requested_by_email", "requested_by_role", "status", "attempts", "warnings",
              "created_at", "updated_at", "heartbeat_at")


def _sqlite_value(value):
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


def bulk_load(engine, total: int) -> dict:
    """Append `total` entries to the chain after its current head; returns timings."""
    from intercity.audit import chain

    started = time.perf_counter()
    with engine.connect() as connection:
        seq, prev = chain.head(connection)
        first_op = connection.exec_driver_sql("SELECT COALESCE(MAX(id), 0) FROM operations").scalar()
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        postgres = engine.dialect.name == "postgresql"
        entry_sql = (f"INSERT INTO audit_entries ({', '.join(ENTRY_COLUMNS)}) "
                     f"VALUES ({', '.join('?' for _ in ENTRY_COLUMNS)})")
        op_sql = f"INSERT INTO operations ({', '.join(OP_COLUMNS)}) VALUES ({', '.join('?' for _ in OP_COLUMNS)})"
        entries, operations = [], []
        hashing = 0.0

        def flush():
            if postgres:
                with cursor.copy(f"COPY operations ({', '.join(OP_COLUMNS)}) FROM STDIN") as copy:
                    for row in operations:
                        copy.write_row(row)
                with cursor.copy(f"COPY audit_entries ({', '.join(ENTRY_COLUMNS)}) FROM STDIN") as copy:
                    for row in entries:
                        copy.write_row(row)
            else:
                cursor.executemany(op_sql, [tuple(_sqlite_value(v) for v in row) for row in operations])
                cursor.executemany(entry_sql, [tuple(_sqlite_value(v) for v in row) for row in entries])
            entries.clear()
            operations.clear()

        if not postgres:
            cursor.execute("BEGIN IMMEDIATE")
        for entry, operation in events(total, first_op):
            seq += 1
            entry["seq"] = seq
            entry["prev_hash"] = prev
            t = time.perf_counter()
            entry["hash"] = prev = chain.compute_hash(entry)
            hashing += time.perf_counter() - t
            entries.append(tuple(entry[c] for c in ENTRY_COLUMNS))
            if operation:
                operations.append(tuple(operation[c] for c in OP_COLUMNS))
            if len(entries) >= 20000:
                flush()
        flush()
        if postgres:
            raw.commit()
            driver = raw.driver_connection
            driver.autocommit = True
            with driver.cursor() as maintenance:
                maintenance.execute("VACUUM ANALYZE audit_entries")
                maintenance.execute("VACUUM ANALYZE operations")
            driver.autocommit = False
        else:
            cursor.execute("COMMIT")
            cursor.execute("ANALYZE")
    finally:
        raw.close()
    return {"load_s": time.perf_counter() - started, "hash_s": hashing, "head_seq": seq}


# -- measuring -------------------------------------------------------------------------------------

def _median_ms(fn, repeat: int = REPEAT, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
    return statistics.median(samples)


def _get(client, url: str):
    def run():
        response = client.get(url)
        body = response.get_data()
        assert response.status_code == 200, (url, response.status_code, body[:300])
        return body

    return run


# Timeline searches, each timed against the plain first page in the same rounds (interleaved, so a
# busy machine slows both alike). The share of entries each matches is counted and printed.
SEARCHES = (
    ("free text, ~1%", "shop-000"),
    ("free text, ~20%", "api"),
    ("free text, no match", "no-such-word"),
    ("key:", "key:DATABASE_URL"),
    ("key: app: created:", "key:DATABASE_URL app:api-005 created:>={month_ago}"),
    ("actor: prefix", "actor:ops"),
)


def _interleaved_ms(runs: dict, repeat: int = REPEAT, warmup: int = 2) -> dict:
    """Median ms of each named callable, called in turn in every round."""
    for _ in range(warmup):
        for fn in runs.values():
            fn()
    samples = {name: [] for name in runs}
    for _ in range(repeat):
        for name, fn in runs.items():
            t = time.perf_counter()
            fn()
            samples[name].append((time.perf_counter() - t) * 1000)
    return {name: statistics.median(values) for name, values in samples.items()}


def measure_search(app, client) -> dict:
    from urllib.parse import urlencode

    from sqlalchemy import func, select

    from intercity.audit import query
    from intercity.extensions import db
    from intercity.models import AuditEntry

    month_ago = (datetime.now(timezone.utc) - timedelta(days=30)).date().isoformat()
    searches = [(label, text.format(month_ago=month_ago)) for label, text in SEARCHES]
    with app.app_context():
        total = db.session.scalar(select(func.count(AuditEntry.id)))
        shares = {text: db.session.scalar(select(func.count(AuditEntry.id)).where(*query.conditions(text))) / total
                  for _, text in searches}
    runs = {"/audit": _get(client, "/audit")}
    runs.update({text: _get(client, "/audit?" + urlencode({"q": text})) for _, text in searches})
    timed = _interleaved_ms(runs)
    return {"search": [(label, text, shares[text], timed[text]) for label, text in searches],
            "search_baseline_ms": timed["/audit"]}


def measure_render(app, client) -> dict:
    """The first page of /audit as a request against the same 50 rows rendered from memory, interleaved.

    From memory: the rows are read once (entries, operations, outcomes, command runs), the template
    context is built once (context processors included), and each round only renders
    audit/_main.html and audit/timeline.html around it, inside a request as the logged-in viewer. The ratio is what the
    database, the session, the request and the per-row work outside the template cost on top.
    """
    from flask import render_template
    from flask_login import login_user
    from sqlalchemy import select

    from intercity.audit import query, timeline
    from intercity.audit.query import Filter
    from intercity.blueprints.audit import _links
    from intercity.extensions import db
    from intercity.models import User

    with app.test_request_context("/audit"):
        from flask import request

        request.endpoint  # noqa: B018 (matched by test_request_context)
        login_user(db.session.scalar(select(User).where(User.email == "bench@example.com")))
        flt = Filter.from_args(request.args, [])
        page = query.page(db.session, flt.conditions())
        rows = timeline.rows(page.entries)
        context = dict(scope=timeline.Scope(), flt=flt, chips=query.CHIPS, error=None, before=None, older=page.older,
                       items=timeline.with_days(rows), **_links(timeline.Scope(), flt))
        # The page as the view builds it: its main region, then the session's page around it.
        from markupsafe import Markup

        from intercity.audit import page_cache

        main = app.jinja_env.get_template("audit/_main.html")
        template = app.jinja_env.get_template("audit/timeline.html")
        context["csrf_token"] = lambda: Markup(page_cache.TOKEN_SLOT)
        app.update_template_context(context)

        def from_memory():
            region = Markup(page_cache.with_token(main.render(context)))
            return template.render({**context, "main": region})

        memory_body = from_memory()

        request_body = _get(client, "/audit")()
        timed = _interleaved_ms({"request": _get(client, "/audit"), "memory": from_memory}, repeat=REPEAT * 2)
        db.session.rollback()
    return {"render_request_ms": timed["request"], "render_memory_ms": timed["memory"],
            "render_rows": len(rows), "render_sizes": (len(request_body), len(memory_body.encode()))}


def measure(app, client) -> dict:
    from sqlalchemy import func, not_, select

    from intercity.audit import integrity, query
    from intercity.extensions import db
    from intercity.models import AuditEntry

    results = {}
    with app.app_context():
        deep_offset = PAGE * 999
        deep_before = db.session.scalar(
            select(AuditEntry.seq).where(not_(query.folded())).order_by(AuditEntry.seq.desc())
            .offset(deep_offset - 1).limit(1))
        print_entries = db.session.scalar(select(func.count(AuditEntry.id)).where(
            AuditEntry.server_name == "srv-01", AuditEntry.app_name == PRINT_APP, not_(query.folded())))
    results["first_page_ms"] = _median_ms(_get(client, "/audit"))
    results["category_page_ms"] = _median_ms(_get(client, "/audit?category=server"))
    results["security_page_ms"] = _median_ms(_get(client, "/audit?category=security"))
    results["app_page_ms"] = _median_ms(_get(client, f"/servers/1/apps/{PRINT_APP}/audit"))
    results["query_page_ms"] = _median_ms(_get(client, "/audit?q=actor:dev3@example.com+action:env_var.*"))
    results["deep_keyset_page_ms"] = _median_ms(_get(client, f"/audit?before={deep_before}"))

    with app.app_context():
        def keyset_first():
            db.session.scalars(query.entries_statement([], limit=PAGE + 1)).all()
            db.session.rollback()

        def keyset_deep():
            db.session.scalars(query.entries_statement([], before=deep_before, limit=PAGE + 1)).all()
            db.session.rollback()

        def offset_deep():
            db.session.scalars(query.entries_statement([], limit=PAGE + 1).offset(deep_offset)).all()
            db.session.rollback()

        results["query_first_ms"] = _median_ms(keyset_first)
        results["query_keyset_deep_ms"] = _median_ms(keyset_deep)
        results["query_offset_deep_ms"] = _median_ms(offset_deep, repeat=5, warmup=1)

        t = time.perf_counter()
        check = integrity.verify(full=True)  # the whole chain in one go, as the table reports it
        db.session.commit()
        results["full_verify_s"] = time.perf_counter() - t
        assert check.ok, check.problem
    results["print_entries"] = print_entries
    results["print_ms"] = _median_ms(_get(client, f"/servers/1/apps/{PRINT_APP}/audit/print"), repeat=3, warmup=1)
    results["deep_ratio"] = results["deep_keyset_page_ms"] / results["first_page_ms"]
    return results


def run_backend(url: str, total: int) -> dict:
    from flask_migrate import upgrade

    from intercity import create_app
    from intercity.audit.actor import Actor, acting_as
    from intercity.extensions import db
    from intercity.models import Server
    from intercity.models import AuditEntry
    from intercity.services.users import create_user
    from sqlalchemy import func, select

    # Uncached: what a page costs when it has to be rendered (a new entry, a pending row, a label that changed).
    app = create_app({**_config(url), "TIMELINE_CACHE": 0})
    if REUSE:
        with app.app_context():
            loaded = {"load_s": 0.0, "hash_s": 0.0, "head_seq": db.session.scalar(select(func.max(AuditEntry.seq)))}
            db.session.rollback()
        return _measure_all(app, loaded)
    with app.app_context():
        upgrade()
        with acting_as(Actor.system("cli")):
            create_user("bench@example.com", "bench password 123", "viewer")
            for n in range(1, SERVERS + 1):
                server = Server(name=f"srv-{n:02d}", host=f"10.0.1.{n}", port=22, ssh_user="root")
                server.generate_key_pair()
                db.session.add(server)
            db.session.commit()
        loaded = bulk_load(db.engine, total)
    return _measure_all(app, loaded)


def _measure_all(app, loaded: dict) -> dict:
    from intercity.extensions import db

    client = app.test_client()
    response = client.post("/login", data={"email": "bench@example.com", "password": "bench password 123"})
    assert response.status_code == 302, response.status_code
    results = {**loaded, **measure_render(app, client)}
    results["load"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    if not RENDER_ONLY:
        results.update({**measure_search(app, client), **measure(app, client)})
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    return results


def _postgres():
    from bench._databases import fresh_postgres

    return fresh_postgres(PG_NAME)


def report(name: str, r: dict) -> str:
    ok = lambda good: "meets" if good else "MISSES"  # noqa: E731
    render_ratio = r["render_request_ms"] / r["render_memory_ms"]
    lines = [
        f"{name}: {r['head_seq']:,} entries (bulk load {r['load_s']:.0f} s, of which hashing {r['hash_s']:.0f} s)",
        f"  first page of /audit as a request {r['render_request_ms']:.1f} ms against its {r['render_rows']} rows "
        f"rendered from memory {r['render_memory_ms']:.1f} ms, interleaved: {render_ratio:.2f}x (target <= "
        f"{TARGETS['render_ratio']}x: {ok(render_ratio <= TARGETS['render_ratio'])}; bodies "
        f"{r['render_sizes'][0]:,} / {r['render_sizes'][1]:,} bytes)",
        f"  load average {r['load']}",
    ]
    if RENDER_ONLY:
        return "\n".join(lines)
    lines += [
        f"  first page of /audit          {r['first_page_ms']:8.1f} ms  (target < {TARGETS['first_page_ms']:.0f} ms: "
        f"{ok(r['first_page_ms'] < TARGETS['first_page_ms'])})",
        f"  category chip (Servers)       {r['category_page_ms']:8.1f} ms",
        f"  category chip (Security)      {r['security_page_ms']:8.1f} ms",
        f"  app page ({PRINT_APP})          {r['app_page_ms']:8.1f} ms",
        f"  query actor:+action:env_var.* {r['query_page_ms']:8.1f} ms",
        f"  page 1,000 by keyset          {r['deep_keyset_page_ms']:8.1f} ms  ({r['deep_ratio']:.2f}x the first; target "
        f"<= {TARGETS['deep_ratio']}x: {ok(r['deep_ratio'] <= TARGETS['deep_ratio'])})",
        f"  query only: first page {r['query_first_ms']:.1f} ms, page 1,000 keyset {r['query_keyset_deep_ms']:.1f} ms, "
        f"page 1,000 OFFSET {r['query_offset_deep_ms']:.1f} ms",
        f"  full chain verification (checkpoint) {r['full_verify_s']:.1f} s",
        f"  print of {PRINT_APP} ({r['print_entries']:,} entries) {r['print_ms']:8.0f} ms  (target < "
        f"{TARGETS['print_ms']:.0f} ms: {ok(r['print_ms'] < TARGETS['print_ms'])})",
        f"  searches (interleaved with /audit, {r['search_baseline_ms']:.1f} ms in the same rounds):",
    ]
    for label, text, share, ms in r["search"]:
        lines.append(f"    {label:22} {text!r:52} {share:6.1%} of entries  {ms:7.1f} ms  "
                     f"({ms / r['search_baseline_ms']:.2f}x /audit; target < {TARGETS['first_page_ms']:.0f} ms: "
                     f"{ok(ms < TARGETS['first_page_ms'])})")
    return "\n".join(lines)


def main() -> None:
    print(f"Timeline benchmark: {ENTRIES:,} entries, {SERVERS} servers, {APPS} apps; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory(prefix="intercity-bench-") as workdir:
        os.environ.setdefault("INTERCITY_INSTANCE_PATH", str(Path(workdir) / "instance"))
        sqlite_url = f"sqlite:///{Path(workdir) / 'timeline.sqlite'}"
        if REUSE:
            print(report("Reused database", run_backend(REUSE, 0)), flush=True)
            return
        if "postgresql" in BACKENDS:
            pg_url, drop = _postgres()
            if KEEP:
                print(f"  keeping {pg_url}", flush=True)
            try:
                print(report("PostgreSQL", run_backend(pg_url, ENTRIES)), flush=True)
            finally:
                if not KEEP:
                    drop()
        if "sqlite" in BACKENDS:
            print(report("SQLite", run_backend(sqlite_url, ENTRIES)), flush=True)


if __name__ == "__main__":
    main()
