"""The Dokku double's deploy commands, run as a script: builds:*, ps:scale/rebuild/stop/start, git:report, events."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.deploys import events_on, record_deploy
from tests.support.sshd import DokkuDouble

DOUBLE = Path(__file__).parent / "support" / "dokku_double.py"


@pytest.fixture
def double(tmp_path):
    return DokkuDouble(tmp_path / "dokku")


def dokku(double: DokkuDouble, *args: str, name: str = ""):
    env = {**os.environ, "DOKKU_DOUBLE_ROOT": str(double.root), "NAME": name, "FINGERPRINT": ""}
    return subprocess.run([sys.executable, str(DOUBLE), *args], env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=30)


def test_builds_list_info_output_and_failures(double):
    double.create_app("web")
    events_on(double)
    record = record_deploy(double, "web", key_name="alice", seconds=30)
    failed = record_deploy(double, "web", status="failed", started=record_started(record) + 100)
    listed = dokku(double, "builds:list", "web", "--format", "json")
    assert listed.returncode == 0
    builds = json.loads(listed.stdout)
    assert [b["id"] for b in builds] == [failed["id"], record["id"]]  # newest first
    assert builds[1]["source"] == "git-hook" and builds[1]["status"] == "succeeded" and builds[1]["exit_code"] == 0
    assert builds[1]["duration"] == "30s" and builds[1]["log_path"].endswith(f"/web/{record['id']}.log")
    assert builds[0]["status"] == "failed" and builds[0]["exit_code"] == 1
    info = dokku(double, "builds:info", "web", record["id"], "--format", "json")
    assert json.loads(info.stdout)["id"] == record["id"]
    assert "Application deployed" in dokku(double, "builds:output", "web", record["id"]).stdout
    missing = dokku(double, "builds:list", "nope", "--format", "json")
    assert missing.returncode == 20 and "App nope does not exist" in missing.stderr
    assert dokku(double, "builds:list", "web", "--kind", "x").returncode == 1
    events = dokku(double, "events").stdout
    assert "INVOKED: receive-app( web " in events and "NAME=alice" in events
    assert f"DOKKU_PID={record['pid']}" in events
    double.set_version("0.37.5")
    old = dokku(double, "builds:list", "web", "--format", "json")
    assert old.returncode == 1 and "is not a dokku command" in old.stderr


def record_started(record: dict) -> float:
    from datetime import datetime

    return datetime.fromisoformat(record["started_at"].replace("Z", "+00:00")).timestamp()


def test_scale_rebuild_stop_start_and_reports(double):
    double.create_app("web")
    assert "has not been deployed" in dokku(double, "ps:rebuild", "web").stdout  # 0.38 merges stderr
    record_deploy(double, "web", sha="a" * 40)
    scaled = dokku(double, "ps:scale", "web", "web=2", "worker=1")
    assert scaled.returncode == 0, scaled.stderr
    assert json.loads(dokku(double, "ps:scale", "--format", "json", "web").stdout) == [
        {"process_type": "web", "quantity": 2}, {"process_type": "worker", "quantity": 1}]
    assert dokku(double, "ps:scale", "web", "web=x").returncode == 1
    report = json.loads(dokku(double, "ps:report", "web", "--format", "json").stdout)
    assert report["processes"] == "3" and report["running"] == "true"
    assert report["status-worker.1"].startswith("running (CID: ")
    assert dokku(double, "ps:stop", "web").returncode == 0
    report = json.loads(dokku(double, "ps:report", "web", "--format", "json").stdout)
    assert report["running"] == "false" and report["status-web.2"].startswith("exited")
    assert dokku(double, "ps:start", "web").returncode == 0
    assert dokku(double, "ps:rebuild", "web").returncode == 0
    sources = [b["source"] for b in json.loads(dokku(double, "builds:list", "web", "--format", "json").stdout)]
    assert sources[:2] == ["ps:rebuild", "ps:start"] and "git-hook" in sources
    git = json.loads(dokku(double, "git:report", "web", "--format", "json").stdout)
    assert git["sha"] == "a" * 40 and git["last-updated-at"].isdigit()
    text = dokku(double, "git:report", "web").stdout
    assert "Git sha:" in text
    assert dokku(double, "ps:stop", "nope").returncode == 20
    apps = json.loads(dokku(double, "apps:report", "web", "--format", "json").stdout)
    assert apps["deploy-source"] == "git-push"
