"""The Dokku double's builds and logs (git:sync, git:from-image, ps:rebuild, logs), run as the script sshd runs.

Their text is inferred (the golden records hold no build); what these tests hold is the behaviour
the panel relies on: a build only with --build (or a change with --build-if-changes), the same
image twice builds nothing, a failure exits 1 with its reason, output arrives as it is printed,
and logs print the last N lines, of one process type when asked.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.support.sshd import DokkuDouble

SCRIPT = Path(__file__).parent / "support" / "dokku_double.py"


def run(root, *argv):
    done = subprocess.run([sys.executable, str(SCRIPT), *argv], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "DOKKU_DOUBLE_ROOT": str(root)})
    return done.returncode, done.stdout, done.stderr


def test_git_sync_builds_only_when_asked_and_from_image_only_on_a_change(tmp_path):
    dokku = DokkuDouble(tmp_path)
    dokku.create_app("web")
    code, out, _ = run(tmp_path, "git:sync", "web", "https://h/r.git", "main")
    assert code == 0 and "Cloning web from https://h/r.git#main" in out and "Building" not in out
    code, out, _ = run(tmp_path, "git:sync", "--build-if-changes", "web", "https://h/r.git", "main")
    assert code == 0 and "Skipping build as no changes were detected" in out
    code, out, _ = run(tmp_path, "git:sync", "--build-if-changes", "web", "https://h/r.git", "v2")
    assert code == 0 and "=====> Application deployed:" in out
    assert run(tmp_path, "git:sync", "web")[1:] == ("", " !     Missing GIT_REMOTE parameter\n")
    assert run(tmp_path, "git:sync", "--build", "nope", "https://h/r.git")[0] == 20
    assert "Building web" in run(tmp_path, "git:from-image", "web", "nginx:1")[1]
    code, out, err = run(tmp_path, "git:from-image", "web", "nginx:1")
    assert code == 0 and "Building" not in out and "No changes detected" in err
    assert dokku.source_image("web") == "nginx:1" and not dokku._state.locked("web")


def test_a_failing_build_exits_1_with_its_reason_and_output_comes_as_it_is_printed(tmp_path):
    dokku = DokkuDouble(tmp_path)
    dokku.create_app("web")
    dokku.slow_builds(0.3)
    dokku.mark_deployed("web")
    with subprocess.Popen([sys.executable, str(SCRIPT), "ps:rebuild", "web"], stdout=subprocess.PIPE,
                          env={**os.environ, "DOKKU_DOUBLE_ROOT": str(tmp_path)}) as process:
        started = time.monotonic()
        first = process.stdout.readline()
        assert b"Rebuilding web" in first and time.monotonic() - started < 3
        assert process.stdout.readline() and process.poll() is None  # still building: each line as printed
        process.stdout.read()
        assert process.wait(30) == 0
    dokku.fail_builds("npm ERR! Missing script")
    dokku.slow_builds(0)
    code, out, _ = run(tmp_path, "ps:rebuild", "web")
    assert code == 1 and out.rstrip().endswith(" !     npm ERR! Missing script")


def test_logs_print_the_last_lines_of_one_process_type(tmp_path):
    dokku = DokkuDouble(tmp_path)
    dokku.create_app("web")
    assert run(tmp_path, "logs", "web")[:2] == (1, "")
    dokku.mark_deployed("web")
    dokku.add_log_lines("web", "one", "two", "three")
    dokku.add_log_lines("web", "job", process="worker")
    code, out, _ = run(tmp_path, "logs", "web", "-n", "2")
    assert code == 0 and [line.split("]: ")[1] for line in out.splitlines()] == ["three", "job"]
    assert run(tmp_path, "logs", "web", "-n", "5", "-p", "worker", "-q")[1] == "job\n"
    assert run(tmp_path, "logs", "nope")[0] == 20
