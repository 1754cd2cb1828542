"""The `intercity` command: the app's Flask CLI plus the panel's own commands."""
from __future__ import annotations

import sys

import click
from flask import current_app
from flask.cli import FlaskGroup, with_appcontext

from intercity.config import ConfigError


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


def _create(email: str, role: str, password_stdin: bool) -> None:
    from intercity.audit.actor import Actor, acting_as
    from intercity.extensions import db
    from intercity.services import users
    from intercity.validation import ValidationError

    password = _read_password(password_stdin)
    with acting_as(Actor.system("cli")):
        try:
            user = users.create_user(email, password, role)
            db.session.commit()
        except ValidationError as error:
            db.session.rollback()
            raise click.ClickException(error.message) from None
    click.echo(f"Created {user.role} {user.email}.")


@click.command("create-admin")
@click.option("--email", required=True, help="The admin's email address.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@with_appcontext
def create_admin(email, password_stdin):
    """Create an admin account."""
    _require_database()
    _create(email, "admin", password_stdin)


@click.command("create-user")
@click.option("--email", required=True, help="The user's email address.")
@click.option("--role", type=click.Choice(["admin", "member", "viewer"]), default="member", show_default=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@with_appcontext
def create_user(email, role, password_stdin):
    """Create a user with a role."""
    _require_database()
    _create(email, role, password_stdin)


@click.command("reset-2fa")
@click.option("--email", required=True, help="The address of the account whose two-factor login goes off.")
@with_appcontext
def reset_2fa(email):
    """Turn off someone's two-factor login (an admin who lost both phone and recovery codes)."""
    from intercity.audit.actor import Actor, acting_as
    from intercity.extensions import db
    from intercity.services import two_factor, users
    from intercity.validation import ValidationError

    _require_database()
    with acting_as(Actor.system("cli")):
        user = users.find_by_email(email)
        if user is None:
            raise click.ClickException(f"No account has the address {email}.")
        try:
            two_factor.reset(user, None)
            db.session.commit()
        except ValidationError as error:
            db.session.rollback()
            raise click.ClickException(error.message) from None
    click.echo(f"Two-factor login of {user.email} is off and their sessions ended; they were told by mail.")


@click.command("run")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@with_appcontext
def run(host, port):
    """Serve the panel (development server; use gunicorn for a team)."""
    _require_database()
    from intercity.jobs import runner

    app = current_app._get_current_object()
    runner.recover_after_restart()
    jobs = app.extensions.get("intercity_jobs")
    if jobs is not None:
        jobs.ensure_running()  # the notification schedule runs even before the first request
    click.echo(f"Intercity on http://{host}:{port}/  (jobs: {'in this process' if app.config['JOBS_IN_PROCESS'] else 'RQ workers'})")
    from werkzeug.serving import run_simple

    run_simple(host, port, app, threaded=True, use_reloader=False, use_debugger=False)


def _require_database() -> None:
    from intercity import database
    from intercity.extensions import db

    state, detail = database.state(db.engine)
    if state != "ok":
        raise click.ClickException(detail)


@click.group("audit")
def audit_group():
    """Verify and export the audit log."""


@audit_group.command("verify")
@click.option("--expect-head", metavar="SEQ:HASH", help="Also fail when the log no longer contains this head.")
@with_appcontext
def audit_verify(expect_head):
    """Walk the hash chain; exit 0 with the head, non-zero naming the first broken entry."""
    _require_database()
    from intercity.audit import chain
    from intercity.extensions import db

    expected = None
    if expect_head:
        try:
            seq, digest = expect_head.split(":", 1)
            expected = (int(seq), digest.strip().lower())
        except ValueError:
            raise click.BadParameter("use SEQ:HASH, as `intercity audit verify` prints it", param_hint="--expect-head")
    from intercity.audit import transcripts
    from intercity.audit import integrity

    with db.engine.connect() as connection:
        result = chain.verify(connection, expect_head=expected)
        # The chain covers the transcripts through each outcome entry's digest of its command runs.
        altered = transcripts.verify(connection) if result.ok else None
    if altered is not None:
        click.echo(f"FAILED: {altered.message}", err=True)
        sys.exit(1)
    if result.ok:
        if result.head_seq:
            # The walk covered every entry: the panel's next verification and print start from here.
            integrity.store(db.session, result.head_seq, result.head_hash, result.count)
            db.session.commit()
        click.echo(f"OK: {result.count} entries verified; head {result.head}")
        return
    click.echo(f"FAILED: {result.problem} (verified {result.count} entries before it)", err=True)
    sys.exit(1)


@audit_group.command("export")
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), required=True, help="CSV or JSON Lines.")
@click.option("--query", "query_text", default="", help='Timeline filter, e.g. "app:api created:>=2026-01-01".')
@click.option("--category", "categories", multiple=True, type=click.Choice(["security", "app", "server", "team"]),
              help="Only this category (repeatable), like the timeline's chips.")
@click.option("--output", type=click.File("w", encoding="utf-8"), default="-", help="File to write (default: stdout).")
@with_appcontext
def audit_export(fmt, query_text, categories, output):
    """Export the audit log with seq, hash, prev_hash and the chain head; the export is itself audited."""
    _require_database()
    from intercity.audit import export
    from intercity.audit.actor import Actor, acting_as
    from intercity.audit.query import Filter, QueryError
    from intercity.extensions import db

    flt = Filter(query=query_text.strip(), categories=tuple(categories))
    try:
        conditions = flt.conditions()
    except QueryError as error:
        raise click.BadParameter(error.message, param_hint="--query") from None
    with acting_as(Actor.system("cli")):
        export.record(db.session, fmt, flt.describe())
        db.session.commit()
    for chunk in export.lines(db.session, fmt, conditions, flt.describe()):
        output.write(chunk)
    output.flush()


@click.group("digest")
def digest_group():
    """Send digests."""


@digest_group.command("send")
@click.option("--user", "email", metavar="EMAIL", help="Only this person (default: everyone whose digest is not off).")
@with_appcontext
def digest_send(email):
    """Send digests now, covering everything since each person's last one; prints what the SMTP server said."""
    _require_database()
    from intercity.audit.actor import Actor, acting_as
    from intercity.notify import on_demand

    with acting_as(Actor.system("cli")):
        try:
            results = on_demand.send_digests(email)
        except LookupError as error:
            raise click.ClickException(str(error)) from None
    failed = False
    for address, status, answer in results:
        click.echo(f"{address}: {status}" + (f" ({answer})" if answer else ""))
        failed = failed or status not in ("sent", "nothing new")
    if not results:
        click.echo("Nobody gets digests (every active user has them off).")
    if failed:
        sys.exit(1)


COMMANDS = [create_admin, create_user, reset_2fa, run, audit_group, digest_group]


def register(app) -> None:
    for command in COMMANDS:
        app.cli.add_command(command)


def main() -> None:
    from intercity import create_app

    try:
        app = create_app()
    except ConfigError as error:
        click.echo(f"Error: {error}", err=True)
        sys.exit(2)
    FlaskGroup(create_app=lambda: app, add_default_commands=False, add_version_option=False,
               load_dotenv=False, set_debug_flag=False).main(prog_name="intercity")
