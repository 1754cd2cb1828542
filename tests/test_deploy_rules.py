"""The rules behind deploying from the panel and reading logs: repository URLs, refs, images, new log lines, the buffer."""
from __future__ import annotations

import pytest

from intercity.dokku import deploys
from intercity.dokku.parsers import check
from intercity.jobs.expiring import MemoryBuffer
from intercity.services.logs import new_lines
from intercity.validation import ValidationError


@pytest.mark.parametrize("url", [
    "https://github.com/team/api.git", "http://git.internal:8080/api", "git@github.com:team/api.git",
    "ssh://git@github.com:2222/team/api.git", "git://example.com/api.git", "github.com:team/api",
])
def test_repository_urls_git_can_fetch_are_kept_as_given(url):
    assert deploys.repo_url(f"  {url} ") == url


@pytest.mark.parametrize("url", [
    "https://user:pass@github.com/team/api.git", "https://ghp_token@github.com/team/api.git",
    "http://x:y@host/r", "ssh://git:secret@github.com/team/api.git", "git:secret@github.com:team/api.git",
])
def test_urls_with_credentials_are_refused_with_the_way_to_private_repositories(url):
    with pytest.raises(ValidationError) as refused:
        deploys.repo_url(url)
    assert refused.value.field == "repo_url"
    assert "credentials" in refused.value.message and "git:auth" in refused.value.message


@pytest.mark.parametrize("url", ["", "-u evil", "file:///etc/passwd", "/srv/repo.git", "https:// x", "ftp://h/r"])
def test_other_strings_are_not_repository_urls(url):
    with pytest.raises(ValidationError):
        deploys.repo_url(url)


def test_refs_images_and_process_types():
    assert deploys.git_ref("") is None and deploys.git_ref(" v1.2.0 ") == "v1.2.0"
    for bad in ("-x", "a..b", "main.lock", "a b"):
        with pytest.raises(ValidationError):
            deploys.git_ref(bad)
    assert deploys.image("registry.example.com:5000/team/app:1.2") == "registry.example.com:5000/team/app:1.2"
    assert deploys.image("nginx@sha256:" + "a" * 64)
    for bad in ("Nginx", "-nginx", "nginx:", "a b"):
        with pytest.raises(ValidationError):
            deploys.image(bad)
    assert deploys.process_type("") is None
    with pytest.raises(ValidationError):
        deploys.process_type("-p")


def test_commands_are_argv_lists():
    assert deploys.git_sync_build("api", "git@github.com:t/a.git", "main").argv == (
        "dokku", "git:sync", "--build", "api", "git@github.com:t/a.git", "main")
    assert deploys.git_sync_build("api", "https://h/r", None).argv[-1] == "https://h/r"
    assert deploys.logs("api", 50, "worker").argv == ("dokku", "logs", "api", "-n", "50", "-p", "worker")
    assert deploys.git_from_image("api", "nginx:1").argv == ("dokku", "git:from-image", "api", "nginx:1")


def test_a_failed_build_reads_in_plain_words():
    command = deploys.git_sync_build("api", "https://h/r", "main")
    with pytest.raises(Exception) as failed:
        check(command, 1, "-----> Building api\n-----> Build failed\n !     npm ERR! Missing script\n", "")
    assert failed.value.message.startswith("The build from the repository of api failed (exit code 1): npm ERR!")
    with pytest.raises(Exception) as fetch:
        check(command, 1, "", "fatal: repository 'https://h/r' not found\n !     Unable to fetch\n")
    assert "could not fetch the repository" in fetch.value.message


def test_new_lines_are_those_after_what_was_shown():
    assert new_lines([], ["a", "b"]) == (["a", "b"], False)
    assert new_lines(["a", "b", "c"], ["b", "c", "d", "e"]) == (["d", "e"], False)
    assert new_lines(["a", "b"], ["a", "b"]) == ([], False)
    assert new_lines(["a"], ["x", "y"]) == (["x", "y"], True)  # more arrived than one read holds


def test_the_memory_buffer_forgets_after_its_time_to_live():
    now = [0.0]
    store = MemoryBuffer(clock=lambda: now[0])
    store.put("k", "v", 60)
    store.append("b", "12345", 10, limit=4)
    store.append("b", "67", 10, limit=4)
    assert store.get("k") == "v" and store.get("b") == "4567"
    now[0] = 30
    assert store.get("b") is None and store.get("k") == "v"
    store.expire("k", 1)
    now[0] = 31.5
    assert store.get("k") is None


def test_the_redis_buffer_keeps_the_end_and_a_time_to_live(redis_url):
    import uuid

    from redis import Redis

    from intercity.jobs.expiring import PREFIX, RedisBuffer

    client = Redis.from_url(redis_url)
    store = RedisBuffer(client)
    key = f"test-{uuid.uuid4().hex}"
    store.put(key, "lög", 60)
    assert store.get(key) == "lög" and 0 < client.ttl(PREFIX + key) <= 60
    store.append(key + "-b", "a" * 10, 30, limit=2)
    assert store.get(key + "-b") == "aa"  # past the limit it keeps the end
    store.expire(key, 1)
    assert client.ttl(PREFIX + key) <= 1
    store.delete(key)
    store.delete(key + "-b")
    assert store.get(key) is None
