"""Parsers for deploy history and running processes: builds:list/info JSON, git:report, apps:report, ps:report."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone

from intercity.dokku.parsers import UnparseableOutput, parse_report, parse_report_json

# The sources whose finished build is a deploy of new code (entries); the others are history only.
DEPLOY_SOURCES = ("git-hook", "git:sync", "git:from-archive", "git:from-image", "git:load-image", "ps:rebuild")
# How pages name a build's source.
SOURCE_WORDS = {
    "git-hook": "git push", "git:sync": "git:sync", "git:from-archive": "git:from-archive",
    "git:from-image": "git:from-image", "git:load-image": "git:load-image", "ps:rebuild": "rebuild",
    "ps:restart": "restart", "ps:start": "start", "deploy": "deploy", "config-redeploy": "config change",
    "unknown": "unknown",
}


@dataclass(frozen=True)
class Build:
    id: str
    kind: str | None
    source: str | None
    status: str | None
    pid: int | None
    started_at: datetime | None
    finished_at: datetime | None
    exit_code: int | None

    @property
    def finished(self) -> bool:
        return self.status not in (None, "running")

    @property
    def deploy(self) -> bool:
        return self.source in DEPLOY_SOURCES


def _moment(value) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _int(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _build(record: dict) -> Build:
    build_id = record.get("id")
    if not isinstance(build_id, str) or not build_id:
        raise UnparseableOutput("A build listed by builds:list has no id.")
    text = lambda key: record.get(key) if isinstance(record.get(key), str) else None  # noqa: E731
    return Build(id=build_id[:80], kind=text("kind"), source=text("source"), status=text("status"),
                 pid=_int(record.get("pid")), started_at=_moment(record.get("started_at")),
                 finished_at=_moment(record.get("finished_at")), exit_code=_int(record.get("exit_code")))


def parse_builds(stdout: str) -> list[Build]:
    """`builds:list <app> --format json`: the app's builds (any order)."""
    text = (stdout or "").strip()
    if not text or text == "null":
        return []
    try:
        data = json.loads(text)
    except ValueError:
        raise UnparseableOutput("The JSON output of builds:list could not be read.") from None
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise UnparseableOutput("builds:list did not print a list of builds.")
    return [_build(record) for record in data]


def parse_build_info(stdout: str) -> Build:
    try:
        data = json.loads(stdout or "")
    except ValueError:
        raise UnparseableOutput("The JSON output of builds:info could not be read.") from None
    if not isinstance(data, dict):
        raise UnparseableOutput("builds:info did not print a build.")
    return _build(data)


def parse_git_report(stdout: str, json_format: bool) -> dict:
    """The current deploy's sha and time from git:report (text before 0.38)."""
    if json_format:
        raw = parse_report_json(stdout)
        sha, updated = raw.get("sha", ""), raw.get("last-updated-at", "")
    else:
        raw = parse_report(stdout)
        sha, updated = raw.get("Git sha", ""), raw.get("Git last updated at", "")
    return {"git_sha": str(sha or "") or None,
            "last_updated_at": int(updated) if str(updated).isdigit() else None}


def parse_deploy_source(stdout: str, json_format: bool) -> dict:
    if json_format:
        raw = parse_report_json(stdout)
        source, meta = raw.get("deploy-source", ""), raw.get("deploy-source-metadata", "")
    else:
        raw = parse_report(stdout)
        source, meta = raw.get("App deploy source", ""), raw.get("App deploy source metadata", "")
    return {"deploy_source": str(source or "") or None, "deploy_source_metadata": str(meta or "")[:200] or None}


_STATUS_KEY = re.compile(r"(?:status-)?(?P<proc>[a-z0-9][a-z0-9_-]*)\.(?P<n>\d+)\Z")
_STATUS_LABEL = re.compile(r"Status (?P<proc>[a-z0-9][a-z0-9_-]*) (?P<n>\d+)\Z")


def parse_processes(stdout: str, json_format: bool) -> dict[str, dict]:
    """Per process type: {count, states: {state: n}} from ps:report's `status-<type>.<n>` keys."""
    found: dict[str, dict] = {}
    if json_format:
        raw = parse_report_json(stdout)
        items = [(m, v) for k, v in raw.items() if k.startswith("status-") and (m := _STATUS_KEY.match(k))]
    else:
        raw = parse_report(stdout)
        items = [(m, v) for k, v in raw.items() if (m := _STATUS_LABEL.match(k))]
    for match, value in items:
        state = str(value).split(" ", 1)[0].strip() or "unknown"
        entry = found.setdefault(match.group("proc"), {"count": 0, "states": {}})
        entry["count"] += 1
        entry["states"][state] = entry["states"].get(state, 0) + 1
    return dict(sorted(found.items()))
