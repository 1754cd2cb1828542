"""Input no view can use, refused before it reaches one: ids beyond 64 bits, NUL bytes, files in text fields."""
from __future__ import annotations

from flask import render_template, request
from werkzeug.routing import IntegerConverter

# Row ids are INTEGER columns (32-bit on PostgreSQL); seqs and `before=` are 64-bit.
MAX_ROW_ID = 2**31 - 1
MAX_SEQ = 2**63 - 1


class RowIdConverter(IntegerConverter):
    """`<int:...>` matching only ids a row can have, so a larger one is a 404, not an overflow."""

    def __init__(self, map, fixed_digits=0, min=None, max=MAX_ROW_ID, signed=False):
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)


class SeqConverter(RowIdConverter):
    """`<seq:...>` for an entry's seq (a 64-bit column)."""

    def __init__(self, map, fixed_digits=0, min=None, max=MAX_SEQ, signed=False):
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)


def id_arg(value) -> int | None:
    """A query-string seq (`before=`): a non-negative 64-bit integer, or None for anything else."""
    if value is None:
        return None
    text = str(value).strip()
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        return None
    number = int(text)
    return number if number <= MAX_SEQ else None


def init_app(app) -> None:
    """Install the converters (before any blueprint adds its rules) and the request check."""
    app.url_map.converters["int"] = RowIdConverter
    app.url_map.converters["seq"] = SeqConverter

    @app.before_request
    def _refuse_unusable_input():
        if request.endpoint == "static":
            return None
        # PostgreSQL text cannot hold NUL, and no name, key or value of the panel has one: nothing in a
        # path with NUL exists, and a field with one is refused whole.
        if any("\x00" in str(value) for value in (request.view_args or {}).values()):
            return _refusal(404, "Not found", "There is nothing here. It may have been removed.")
        if any("\x00" in value for _, value in request.headers.items()):
            # The User-Agent and X-Request-ID go into audit entries.
            return _refusal(400, "Bad request", "A request header contains a NUL byte.")
        texts = [*request.args.items(multi=True), *request.form.items(multi=True)]
        if any("\x00" in key or "\x00" in value for key, value in texts):
            return _refusal(422, "Cannot use that input", "A field contains a NUL byte, which no name or value "
                            "of the panel can hold. Remove it and try again.")
        if request.files:
            return _refusal(422, "Cannot use that input", "The panel's forms take text, not files: paste the "
                            "file's contents into the field instead.")
        return None


def _refusal(code: int, title: str, message: str):
    return render_template("error.html", code=code, title=title, message=message), code
