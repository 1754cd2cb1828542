"""The `intercity` command: creating users non-interactively, and one-line errors for bad setups."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from intercity.extensions import db
from intercity.models import User

INTERCITY = str(Path(sys.executable).parent / "intercity")


def test_create_admin_reads_the_password_from_stdin(runner):
    result = runner.invoke(args=["create-admin", "--email", "Ops@Example.com", "--password-stdin"],
                           input="a long enough password\n")
    assert result.exit_code == 0, result.output
    assert "Created admin ops@example.com" in result.output
    user = db.session.scalar(select(User).where(User.email == "ops@example.com"))
    assert user.role == "admin" and user.check_password("a long enough password")


def test_create_user_with_a_role_and_prompted_password(runner):
    result = runner.invoke(args=["create-user", "--email", "view@example.com", "--role", "viewer"],
                           input="a long enough password\na long enough password\n")
    assert result.exit_code == 0, result.output
    assert db.session.scalar(select(User.role).where(User.email == "view@example.com")) == "viewer"


def test_create_user_refuses_bad_input_without_a_traceback(runner, member):
    short = runner.invoke(args=["create-user", "--email", "x@example.com", "--password-stdin"], input="short\n")
    assert short.exit_code != 0 and "at least 12 characters" in short.output
    taken = runner.invoke(args=["create-user", "--email", member.email, "--password-stdin"],
                          input="a long enough password\n")
    assert taken.exit_code != 0 and "already has an account" in taken.output
    bad_role = runner.invoke(args=["create-user", "--email", "y@example.com", "--role", "owner", "--password-stdin"],
                             input="a long enough password\n")
    assert bad_role.exit_code != 0 and "owner" in bad_role.output
    assert "Traceback" not in short.output + taken.output + bad_role.output


def _run(args, env_overrides, stdin=""):
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "INTERCITY_ENCRYPTION_KEY", "REDIS_URL")}
    env.update(env_overrides)
    return subprocess.run([INTERCITY, *args], input=stdin, capture_output=True, text=True, env=env, timeout=120)


def test_real_command_line_creates_a_user(database_url, tmp_path):
    env = {"DATABASE_URL": database_url, "INTERCITY_INSTANCE_PATH": str(tmp_path)}
    result = _run(["create-user", "--email", "cli@example.com", "--role", "member", "--password-stdin"], env,
                  "a long enough password\n")
    assert result.returncode == 0, result.stderr
    verify = _run(["audit", "verify"], env)
    assert verify.returncode == 0 and verify.stdout.startswith("OK: 1 entries verified; head 1:")


def test_unmigrated_and_unreachable_databases_get_one_line_errors(tmp_path):
    empty = _run(["create-admin", "--email", "a@example.com", "--password-stdin"],
                 {"DATABASE_URL": f"sqlite:///{tmp_path / 'empty.sqlite'}", "INTERCITY_INSTANCE_PATH": str(tmp_path)},
                 "a long enough password\n")
    assert empty.returncode != 0
    assert "run `intercity db upgrade`" in empty.stderr and "Traceback" not in empty.stderr
    down = _run(["audit", "verify"], {"DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/x",
                                      "INTERCITY_INSTANCE_PATH": str(tmp_path)})
    assert down.returncode != 0
    assert "cannot reach the database" in down.stderr and "Traceback" not in down.stderr
    bad = _run(["audit", "verify"], {"INTERCITY_ENV": "staging", "INTERCITY_INSTANCE_PATH": str(tmp_path)})
    assert bad.returncode == 2 and bad.stderr.strip().startswith("Error: INTERCITY_ENV") and "\n" not in bad.stderr.strip()
