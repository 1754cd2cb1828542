"""Record a deploy on the Dokku double as Dokku 0.38 leaves one: a build record, its log, and event lines."""
from __future__ import annotations

import datetime
import os
import time

from tests.support.sshd import DokkuDouble, _double

HOST = "dokku-double"


def _event_line(stamp: float, trigger: str, args: str, name: str, fingerprint: str, pid: int) -> str:
    moment = datetime.datetime.fromtimestamp(stamp, datetime.timezone.utc).isoformat(timespec="microseconds")
    # The format real Dokku 0.38.27 wrote with Debian 12's rsyslog (reference, golden run).
    return (f"{moment} {HOST} dokku-event[{pid + 1}]: INVOKED: {trigger}( {args} ) NAME={name} "
            f"FINGERPRINT={fingerprint} DOKKU_PID={pid}\n")


def events_on(dokku: DokkuDouble, on: bool = True) -> None:
    old = os.umask(0)
    try:
        dokku._state.set_events(on)
    finally:
        os.umask(old)


def record_deploy(dokku: DokkuDouble, app: str, *, source: str = "git-hook", status: str = "succeeded",
                  key_name: str | None = "alice", fingerprint: str = "SHA256:test", sha: str = "0" * 39 + "1",
                  started: float | None = None, seconds: int = 42, pid: int | None = None,
                  log: str = "-----> Building app...\n=====> Application deployed\n") -> dict:
    """One finished build of `app` on the double, plus the receive-app and post-deploy event lines
    (when the double's event log is on; `key_name=None` writes them with an empty NAME, as a root run does)."""
    state = dokku._state
    started = time.time() - seconds - 5 if started is None else started
    pid = pid or (20000 + int(started) % 10000)
    old = os.umask(0)
    try:
        record = _double.record_build(state, app, source=source, kind="build", status=status,
                                      exit_code=0 if status == "succeeded" else 1, started=started,
                                      finished=started + seconds, pid=pid, log=log)
        if status == "succeeded":
            state.set_deployed(app, True)
            app_dir = state.app_dir(app)
            (app_dir / "GIT_SHA").write_text(sha + "\n")
            (app_dir / "GIT_UPDATED_AT").write_text(f"{int(started + seconds)}\n")
            (app_dir / "DEPLOY_SOURCE").write_text("git-push\n" if source == "git-hook" else source + "\n")
        if state.events_enabled():
            name = key_name or ""
            fp = fingerprint if key_name else ""
            lines = [_event_line(started + 1, "receive-app", f"{app} {sha}", name, fp, pid)]
            if status == "succeeded":
                lines.append(_event_line(started + seconds - 1, "post-deploy", f"{app} 5000 127.0.0.1 dokku/{app}:latest",
                                         name, fp, pid))
            with open(state.events_log, "a", encoding="utf-8") as handle:
                handle.writelines(lines)
    finally:
        os.umask(old)
    return record


def running_build(dokku: DokkuDouble, app: str, *, source: str = "ps:restart") -> dict:
    """A build record still running (its deploy goes on in Docker after the CLI was stopped)."""
    old = os.umask(0)
    try:
        return _double.record_build(dokku._state, app, source=source, kind="deploy", status="running",
                                    started=time.time() - 5)
    finally:
        os.umask(old)
