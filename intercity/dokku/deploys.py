"""Deploying from the panel: the repository, ref and image rules, the build and log commands, and build failures in plain words."""
from __future__ import annotations

import re
from urllib.parse import urlsplit

from intercity import validation
from intercity.dokku.commands import Command, _command, _existing_app
from intercity.validation import ValidationError

# What "Private repositories" means for git:sync: Dokku fetches with the server's own git set-up.
PRIVATE_HINT = ("Private repositories are fetched with the server's own git set-up: for HTTPS, an admin runs "
                "dokku git:auth HOST USER TOKEN on the server once; for SSH URLs, the dokku user's key (made by "
                "dokku git:generate-deploy-key, shown by dokku git:public-key) must be a deploy key of the "
                "repository, and dokku git:allow-host HOST trusts the host's key.")

_SCP_LIKE = re.compile(r"^(?:(?P<user>[A-Za-z0-9._-]+)@)?(?P<host>[A-Za-z0-9.-]+):(?P<path>[^/\\][^\s]*)$")
_SCHEMES = ("https", "http", "ssh", "git")
# A git ref as `git check-ref-format` allows it, kept to the characters branch, tag and sha names use.
_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
# A Docker image reference: [registry[:port]/]path[:tag][@sha256:digest].
_IMAGE = re.compile(r"^[a-z0-9][a-z0-9._/-]*(?::[0-9]+/[a-z0-9._/-]+)?(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
                    r"(?:@sha256:[0-9a-f]{64})?$")
_PROCESS = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
CREDENTIALS = ("That URL carries credentials (a user name with a password or token before the @). The panel "
               "does not store them: remove them. " + PRIVATE_HINT)


def repo_url(url: str | None) -> str:
    """A repository URL git:sync can fetch, with no credentials in it; ValidationError (field `repo_url`) otherwise."""
    url = (url or "").strip()
    if not url:
        raise ValidationError("Enter the repository's URL, e.g. https://github.com/you/app.git.", "repo_url")
    if len(url) > 2048 or any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise ValidationError("That is not a repository URL: no spaces or control characters, at most 2048 "
                              "characters.", "repo_url")
    if url.startswith("-"):
        raise ValidationError("A repository URL cannot start with '-'.", "repo_url")
    if "://" in url:
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            raise ValidationError("That is not a repository URL.", "repo_url") from None
        if parts.scheme.lower() not in _SCHEMES:
            raise ValidationError("Use an https://, ssh:// or git:// URL, or git@host:path.", "repo_url")
        if not parts.hostname:
            raise ValidationError("That URL names no host.", "repo_url")
        user = parts.username
        # Over HTTP(S) any user part is a credential (tokens travel as the user name); over SSH a bare
        # user name (git@) is how the host is reached, a password is not.
        if parts.password is not None or (user and parts.scheme.lower() in ("https", "http")):
            raise ValidationError(CREDENTIALS, "repo_url")
        if "@" in parts.netloc.rpartition("@")[0]:
            raise ValidationError(CREDENTIALS, "repo_url")
        return url
    if "@" in url and ":" in url.partition("@")[0]:
        raise ValidationError(CREDENTIALS, "repo_url")  # user:password@host:path
    if not _SCP_LIKE.match(url):
        raise ValidationError("Use an https://, ssh:// or git:// URL, or git@host:path.", "repo_url")
    return url


def git_ref(ref: str | None) -> str | None:
    """A branch, tag or commit sha, or None for the repository's default branch."""
    ref = (ref or "").strip()
    if not ref:
        return None
    if len(ref) > 255 or not _REF.match(ref) or ".." in ref or ref.endswith((".lock", "/", ".")) or "//" in ref:
        raise ValidationError("Enter a branch, tag or commit, such as main, v1.2.0 or a commit sha.", "repo_ref")
    return ref


def image(name: str | None) -> str:
    name = (name or "").strip()
    if not name:
        raise ValidationError("Enter an image, such as nginx:1.27 or registry.example.com/team/app@sha256:….", "image")
    if len(name) > 512 or not _IMAGE.match(name):
        raise ValidationError("That is not a Docker image reference (name[:tag][@sha256:digest], lowercase).",
                              "image")
    return name


def process_type(name: str | None) -> str | None:
    name = (name or "").strip()
    if not name:
        return None
    if len(name) > 63 or not _PROCESS.match(name):
        raise ValidationError("A process type is a Procfile name such as web or worker.", "process")
    return name


# --- commands ------------------------------------------------------------------------


def git_sync_build(app: str, url: str, ref: str | None) -> Command:
    """`git:sync --build APP REPO [REF]` (Dokku 0.23.0 and newer): fetch, then build and deploy."""
    app = _existing_app(app)
    url = validation.operand(repo_url(url), "repo_url")
    args = ("git:sync", "--build", app, url) + ((validation.operand(git_ref(ref), "repo_ref"),) if ref else ())
    return _command("git:sync", *args, app=app)


def git_from_image(app: str, name: str) -> Command:
    """`git:from-image APP IMAGE` (0.24.0 and newer): the same image and arguments again do nothing."""
    app = _existing_app(app)
    return _command("git:from-image", "git:from-image", app, validation.operand(image(name), "image"), app=app)


def logs(app: str, lines: int, process: str | None = None) -> Command:
    """`logs APP -n N [-p TYPE]`: the last lines of the running containers (never -t: it would not end)."""
    app = _existing_app(app)
    args = ("logs", app, "-n", str(int(lines)))
    if process:
        args += ("-p", validation.operand(process_type(process), "process"))
    return _command("logs", *args, app=app)


BUILD_KINDS = ("git:sync", "git:from-image", "ps:rebuild")


def build_failure(command: Command, code: int, text: str, bangs: list[str], scrub):
    """A failed build or log read in plain words (a DokkuError), or None for the generic reading."""
    from intercity.dokku.parsers import AppNotDeployed, DokkuError

    kind = command.kind
    if kind == "logs" and any(re.fullmatch(r"App \S+ has not been deployed", line) for line in bangs):
        return AppNotDeployed(f"{command.app} has not been deployed yet, so it has no logs.", code)
    if kind not in BUILD_KINDS:
        return None
    if "Missing GIT_REMOTE parameter" in bangs:
        return DokkuError("Dokku got no repository to sync from. Save the repository URL first.", code)
    fetch = re.search(r"fatal: (repository '[^']*' not found|could not read [^\n]*|Authentication failed[^\n]*|"
                      r"unable to access [^\n]*|Could not read from remote repository[^\n]*|"
                      r"couldn't find remote ref [^\n]*)", text)
    if fetch:
        return DokkuError(f"The server could not fetch the repository ({scrub(fetch.group(1).strip())}). "
                          "Check the URL and ref. " + PRIVATE_HINT, code)
    reason = scrub(" ".join(line for line in bangs[-2:] if line)) or scrub(
        " ".join(line.strip() for line in text.splitlines() if line.strip())[-300:])
    what = {"git:sync": "The build from the repository", "git:from-image": "The deploy of the image",
            "ps:rebuild": "The rebuild"}[kind]
    if reason:
        return DokkuError(f"{what} of {command.app} failed (exit code {code}): {reason}. The app keeps running "
                          "its previous release.", code)
    return DokkuError(f"{what} of {command.app} failed with exit code {code} and gave no reason.", code)
