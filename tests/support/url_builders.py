"""Werkzeug's compiled URL builders reused across the suite's apps: every test makes an app, and each app compiles
two builder functions per route (`Rule._compile_builder`, an AST compiled to code), a tenth of a second per app.

A builder depends only on the rule's text, its parsed parts and defaults, and whether unknown arguments are
appended; it reads the rule's converters through its `self` argument when called. So a builder compiled for one
app's rule serves the identical rule of the next app. Tests only: the panel makes its app once per process.
"""
from __future__ import annotations

from werkzeug.routing.rules import Rule

_compiled: dict = {}
_compile = Rule._compile_builder


def _reused(self: Rule, append_unknown: bool = True):
    key = (self.rule, self.subdomain, self.host, tuple(self._trace), repr(sorted((self.defaults or {}).items())),
           self.merge_slashes, append_unknown)
    builder = _compiled.get(key)
    if builder is None:
        builder = _compiled[key] = _compile(self, append_unknown)
    return builder


def install() -> None:
    Rule._compile_builder = _reused
