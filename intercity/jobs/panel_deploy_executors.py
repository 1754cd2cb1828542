"""Executors of the builds the panel starts (from a repository, from an image, a rebuild), with their output live.

While a build runs, its output goes, line by line and redacted like every transcript, into the
expiring buffer under `build_key(op_id)`, which the app page polls; nothing of it is audited or
stored there. The command's run is recorded once, at the end, as every command's is.
"""
from __future__ import annotations

import codecs

from intercity.dokku import deploys
from intercity.jobs import expiring
from intercity.jobs.executors import OperationContext, OperationError

# The live view keeps the end of the output (a build's error comes last); the transcript keeps more.
LIVE_LIMIT = 64 * 1024
# While the build runs, each line written keeps the output an hour; once it ended, a minute.
LIVE_TTL = 3600
ENDED_TTL = 60
# A line longer than this is shown in pieces (progress bars print no newline).
LONGEST_LINE = 4096


def build_key(op_id: int) -> str:
    return f"build:{op_id}"


class LiveOutput:
    """Feeds a command's output into the expiring buffer, whole lines at a time, each redacted."""

    def __init__(self, op_id: int, redactor):
        self.key = build_key(op_id)
        self.redactor = redactor
        self.store = expiring.buffer()
        self.decoders = {name: codecs.getincrementaldecoder("utf-8")("replace") for name in ("stdout", "stderr")}
        self.partial = {"stdout": "", "stderr": ""}
        self.store.put(self.key, "", LIVE_TTL)

    def feed(self, stream: str, data: bytes) -> None:
        text = self.partial[stream] + self.decoders[stream].decode(data)
        lines = text.split("\n")
        rest = lines.pop()
        if len(rest) > LONGEST_LINE:
            lines.append(rest)
            rest = ""
        self.partial[stream] = rest
        if lines:
            self._write(lines)

    def _write(self, lines: list[str]) -> None:
        # Redacted per line: a known secret (or each long line of a multi-line one) sits within one line.
        text = "".join(self.redactor.redact(line.rstrip("\r")) + "\n" for line in lines)
        try:
            self.store.append(self.key, text, LIVE_TTL, LIVE_LIMIT)
        except Exception:  # the live view is a convenience: a Redis hiccup must not fail the build
            pass

    def close(self) -> None:
        rest = [part for part in self.partial.values() if part]
        if rest:
            self._write(rest)
        try:
            self.store.expire(self.key, ENDED_TTL)
        except Exception:
            pass


def stream_build(ctx: OperationContext, command) -> None:
    """Run a build, its output written as it comes to the buffer the page polls; the command run at the end."""
    live = LiveOutput(ctx.op_id, ctx.redactor)
    try:
        ctx.run(command, on_output=live.feed)
    finally:
        live.close()


def deploy_from_repo(ctx: OperationContext) -> None:
    """git:sync --build with the repository and ref the panel holds now (a retry builds the current ones)."""
    app = ctx.app()
    if not app.deploy_repo_url:
        raise OperationError(f"{app.name} has no repository to deploy from any more: save one first.")
    stream_build(ctx, deploys.git_sync_build(app.name, app.deploy_repo_url, app.deploy_repo_ref))


def deploy_image(ctx: OperationContext) -> None:
    app = ctx.app()
    image = ctx.payload.get("image") or app.deploy_image
    if not image:
        raise OperationError(f"{app.name} has no image to deploy: enter one first.")
    stream_build(ctx, deploys.git_from_image(app.name, image))
    if any("No changes detected" in warning for warning in ctx.warnings):
        ctx.warnings[:] = [w for w in ctx.warnings if "No changes detected" not in w]
        ctx.warn(f"Dokku saw the same image and arguments as the last deploy of {app.name}, so it built nothing. "
                 "Use Rebuild to build the app again from that image.")
