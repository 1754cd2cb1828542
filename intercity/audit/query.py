"""Reading the audit log: GitHub audit-log search syntax, category chips and keyset pages on `seq`.

Syntax (GitHub's audit log search, https://docs.github.com/en/organizations/... "Searching the audit log"):

    actor:dev@example.com      the person, including work done on their behalf (worker, cli, ...);
                               actor:worker / actor:cli match the system actor itself
    action:env_var.*           `*` is a wildcard; a bare prefix (action:env_var) matches its actions too
    app:api  server:prod-1     by copied name, so a re-created app shows its older history
    category:security          security, app, server or team (plurals accepted)
    outcome:pending            pending, applied or failed: the outcome of the operation an entry requested
    created:>=2026-01-01       also >, <, <=, an exact day (2026-01-01), and ranges 2026-01-01..2026-01-31
                               (either end may be `*`); times are UTC; a date-time such as 2026-01-01T10:30
                               is an instant
    -app:api                   a leading `-` negates a qualifier
    app:"my app"               double quotes keep spaces in a value

Several values of one qualifier are alternatives (`app:api app:web`); different qualifiers,
negations and `created:` terms all have to hold. Anything else is a QueryError naming the token.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone

from sqlalchemy import and_, exists, func, not_, or_, select, true
from sqlalchemy.orm import aliased

from intercity.audit.rules import CATEGORIES
from intercity.models import AuditEntry, Operation
from intercity.models.operation import PENDING

QUALIFIERS = ("actor", "action", "app", "server", "category", "outcome", "created")
OUTCOMES = {"pending": PENDING, "applied": ("succeeded",), "failed": ("failed",)}
# The entries an operation's end writes; the timeline folds them into the entry that asked for the work.
OUTCOME_ACTIONS = ("operation.succeeded", "operation.failed")
CHIPS = (("security", "Security"), ("app", "Apps"), ("server", "Servers"), ("team", "Team"))
_CATEGORY_ALIASES = {"apps": "app", "servers": "server", "teams": "team"}
PAGE_SIZE = 50


class QueryError(ValueError):
    """A query that cannot be read; the message names the token and what to write instead."""

    def __init__(self, message: str, token: str | None = None):
        super().__init__(message)
        self.message = message
        self.token = token


@dataclass(frozen=True)
class Term:
    qualifier: str
    value: str
    negated: bool
    token: str


# One token: optional "-", optional "name:", then a quoted or bare value.
_TOKEN = re.compile(r'(-?)(?:([A-Za-z_]+):)?("([^"]*)"?|\S*)')


def tokens(text: str) -> list[Term]:
    """Split a query into terms; raises QueryError for anything that is not `qualifier:value`."""
    terms: list[Term] = []
    position = 0
    text = text or ""
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position >= len(text):
            return terms
        match = _TOKEN.match(text, position)
        position = match.end()
        # A value glued to more text after a closing quote (app:"a"b) belongs to the same token.
        while position < len(text) and not text[position].isspace():
            position += 1
        raw = text[match.start():position]
        negated, qualifier, value, quoted = match.group(1), match.group(2), match.group(3), match.group(4)
        if match.end() != position:
            raise QueryError(f"Cannot read {raw!r}: put a value with spaces or quotes in double quotes, "
                             f'e.g. app:"my app".', raw)
        if value.startswith('"'):
            if not value.endswith('"') or len(value) < 2:
                raise QueryError(f"{raw!r} has an opening double quote but no closing one.", raw)
            value = quoted
        if not qualifier:
            hint = ", ".join(f"{name}:" for name in QUALIFIERS)
            raise QueryError(f"{raw!r} is not a filter: use qualifier:value with one of {hint} "
                             "(e.g. action:env_var.* or -actor:ops@example.com).", raw)
        qualifier = qualifier.lower()
        if qualifier not in QUALIFIERS:
            raise QueryError(f"Unknown qualifier {qualifier + ':'!r} in {raw!r}: use one of "
                             f"{', '.join(q + ':' for q in QUALIFIERS)}.", raw)
        if value == "":
            raise QueryError(f"{raw!r} has no value: write {qualifier}:something.", raw)
        terms.append(Term(qualifier, value, bool(negated), raw))


# -- values -------------------------------------------------------------------------------------

def _like(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


def _match(column, value: str):
    """Equality, or LIKE when the value has `*` wildcards."""
    if "*" in value:
        return column.like(_like(value), escape="\\")
    return column == value


def _nullsafe(column):
    # Negations must keep rows whose column is NULL: NOT (NULL = 'x') is NULL, which drops them.
    return func.coalesce(column, "")


def _actor(value: str, negated: bool):
    wrap = _nullsafe if negated else (lambda c: c)
    value = value.lower() if "@" in value else value
    # Worker and CLI entries carry the person they act for in actor_email: "on behalf of" matches too.
    return or_(_match(wrap(AuditEntry.actor_email), value), _match(wrap(AuditEntry.actor_kind), value),
               _match(wrap(AuditEntry.actor_os_user), value))


def _action(value: str, negated: bool):
    value = value.lower()
    if "*" in value or "." in value:
        return _match(AuditEntry.action, value)
    # A bare prefix such as action:env_var means every env_var.* action.
    return or_(AuditEntry.action == value, AuditEntry.action.like(_like(value) + ".%", escape="\\"))


def _named(column):
    def build(value: str, negated: bool):
        return _match(_nullsafe(column) if negated else column, value)

    return build


def _category(value: str, negated: bool):
    name = _CATEGORY_ALIASES.get(value.lower(), value.lower())
    if name not in CATEGORIES:
        raise QueryError(f"category:{value} is not a category: use one of {', '.join(CATEGORIES)}.",
                         f"category:{value}")
    return AuditEntry.category == name


def _outcome(value: str, negated: bool):
    statuses = OUTCOMES.get(value.lower())
    if statuses is None:
        raise QueryError(f"outcome:{value} is not an outcome: use pending, applied or failed.", f"outcome:{value}")
    in_outcome = AuditEntry.operation_id.in_(select(Operation.id).where(Operation.status.in_(statuses)))
    if negated:
        # NOT (this) must keep entries without an operation: make `this` false for them, not NULL.
        return and_(AuditEntry.operation_id.is_not(None), in_outcome)
    return in_outcome


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?Z?$")


def _after(moment: datetime, step: timedelta) -> datetime:
    # The last day of year 9999 has no next day: its end is the last representable instant.
    try:
        return moment + step
    except OverflowError:
        return datetime.max.replace(tzinfo=timezone.utc)


def _moment(text: str, token: str) -> tuple[datetime, datetime]:
    """(start, end) of a day or an instant, in UTC; end is exclusive."""
    try:
        if _DATE.match(text):
            day = date.fromisoformat(text)
            start = datetime.combine(day, time(), tzinfo=timezone.utc)
            return start, _after(start, timedelta(days=1))
        if _DATETIME.match(text):
            instant = datetime.fromisoformat(text.rstrip("Z").replace(" ", "T")).replace(tzinfo=timezone.utc)
            return instant, _after(instant, timedelta(microseconds=1))
    except ValueError:
        raise QueryError(f"{token!r}: {text} is not a real date.", token) from None
    raise QueryError(f"{token!r}: write dates as YYYY-MM-DD (UTC), e.g. created:>=2026-01-01 or "
                     "created:2026-01-01..2026-01-31.", token)


def _created(value: str, negated: bool, token: str):
    column = AuditEntry.created_at
    for operator in (">=", "<=", ">", "<"):
        if value.startswith(operator):
            start, end = _moment(value[len(operator):], token)
            return {">=": column >= start, ">": column >= end, "<=": column < end, "<": column < start}[operator]
    if ".." in value:
        low, _, high = value.partition("..")
        if not low or not high:
            raise QueryError(f"{token!r}: a range needs both ends, e.g. created:2026-01-01..2026-01-31 "
                             "(use * for an open end).", token)
        conditions = []
        if low != "*":
            conditions.append(column >= _moment(low, token)[0])
        if high != "*":
            conditions.append(column < _moment(high, token)[1])
        if low != "*" and high != "*" and _moment(low, token)[0] >= _moment(high, token)[1]:
            raise QueryError(f"{token!r}: the range ends before it starts.", token)
        return and_(*conditions) if conditions else true()
    start, end = _moment(value, token)
    return and_(column >= start, column < end)


_BUILDERS = {
    "actor": _actor,
    "action": _action,
    "app": _named(AuditEntry.app_name),
    "server": _named(AuditEntry.server_name),
    "category": _category,
    "outcome": _outcome,
}


def conditions(text: str) -> list:
    """SQLAlchemy conditions for a query string (all must hold); raises QueryError."""
    terms = tokens(text)
    alternatives: dict[str, list] = {}
    result = []
    for term in terms:
        if term.qualifier == "created":
            condition = _created(term.value, term.negated, term.token)
        else:
            condition = _BUILDERS[term.qualifier](term.value, term.negated)
        if term.negated:
            result.append(not_(condition))
        elif term.qualifier == "created":
            result.append(condition)
        else:
            alternatives.setdefault(term.qualifier, []).append(condition)
    for options in alternatives.values():
        result.append(options[0] if len(options) == 1 else or_(*options))
    return result


# -- what a timeline shows ------------------------------------------------------------------------

def folded():
    """Outcome entries that belong to an entry which requested the work: shown inside it, not alone."""
    requester = aliased(AuditEntry)
    return and_(
        AuditEntry.action.in_(OUTCOME_ACTIONS),
        exists().where(requester.operation_id == AuditEntry.operation_id,
                       requester.action.not_in(OUTCOME_ACTIONS)),
    )


@dataclass
class Filter:
    """What one timeline view shows: its scope, the chips pressed and the query box."""

    query: str = ""
    categories: tuple[str, ...] = ()
    scope: list = field(default_factory=list)  # conditions fixed by the page (a server, an app)

    @classmethod
    def from_args(cls, args, scope: list | None = None) -> "Filter":
        chosen = []
        for value in args.getlist("category"):
            for name in value.split(","):
                name = _CATEGORY_ALIASES.get(name.strip().lower(), name.strip().lower())
                if name in CATEGORIES and name not in chosen:
                    chosen.append(name)
        return cls(query=(args.get("q") or "").strip(), categories=tuple(chosen), scope=list(scope or []))

    @property
    def filtered(self) -> bool:
        return bool(self.query or self.categories or self.scope)

    def conditions(self) -> list:
        """All conditions of this view; raises QueryError for a bad query."""
        result = list(self.scope)
        if self.categories:
            result.append(AuditEntry.category.in_(self.categories))
        result.extend(conditions(self.query))
        return result

    def describe(self) -> str:
        parts = []
        if self.categories:
            names = dict(CHIPS)
            parts.append("categories " + ", ".join(names[c] for c in self.categories))
        if self.query:
            parts.append(f"query {self.query}")
        return "; ".join(parts)

    def args(self, **extra) -> dict:
        """URL parameters that reproduce this filter (for links, print, export)."""
        values = {}
        if self.query:
            values["q"] = self.query
        if self.categories:
            values["category"] = list(self.categories)
        values.update({k: v for k, v in extra.items() if v is not None})
        return values

    def toggled(self, category: str | None) -> dict:
        """URL parameters with one chip pressed or released (None: the All chip)."""
        if category is None:
            chosen = []
        elif category in self.categories:
            chosen = [c for c in self.categories if c != category]
        else:
            chosen = [*self.categories, category]
        return {**({"q": self.query} if self.query else {}), **({"category": chosen} if chosen else {})}


def entries_statement(conditions: list, *, before: int | None = None, limit: int | None = PAGE_SIZE,
                      fold: bool = True, ascending: bool = False):
    """Entries matching `conditions`, newest first, below `before` (keyset on seq; never OFFSET)."""
    statement = select(AuditEntry).where(*conditions)
    if fold:
        statement = statement.where(not_(folded()))
    if before is not None:
        statement = statement.where(AuditEntry.seq < before)
    statement = statement.order_by(AuditEntry.seq.asc() if ascending else AuditEntry.seq.desc())
    if limit is not None:
        statement = statement.limit(limit)
    return statement


@dataclass
class Page:
    entries: list
    older: int | None  # `before` for the next page, None at the oldest entry


def page(session, conditions: list, *, before: int | None = None, size: int = PAGE_SIZE) -> Page:
    """One page of the timeline: `size` entries, and where the next (older) one starts."""
    rows = session.scalars(entries_statement(conditions, before=before, limit=size + 1)).all()
    more = len(rows) > size
    rows = rows[:size]
    return Page(rows, rows[-1].seq if more and rows else None)
