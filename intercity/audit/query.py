"""Reading the audit log: GitHub audit-log search syntax, category chips and keyset pages on `seq`.

Syntax (GitHub's audit log search, https://docs.github.com/en/organizations/... "Searching the audit log"):

    actor:dev@example.com      the person, including work done on their behalf (worker, cli, ...), by
                               prefix (actor:ops finds ops@example.com); actor:worker / actor:cli match
                               the system actor itself
    action:env_var.*           `*` is a wildcard; a bare prefix (action:env_var) matches its actions too
    key:DATABASE_URL           what was changed: an env var by name, domain:api.example.com a domain,
                               target:ci-bot anything by its label (env var, domain, key, user, ...); with `*`
    app:api  server:prod-1     by copied name, so a re-created app shows its older history
    category:security          security, app, server or team (plurals accepted); the chips write these
    outcome:pending            pending, applied or failed: the outcome of the operation an entry requested
    created:>=2026-01-01       also >, <, <=, an exact day (2026-01-01), and ranges 2026-01-01..2026-01-31
                               (either end may be `*`); times are UTC; a date-time such as 2026-01-01T10:30
                               is an instant
    LEGACY  "on call"          free text: a bare word or a quoted phrase, found anywhere in the entry's
                               sentence (actor, target, app, server), ignoring case
    -app:api  -LEGACY          a leading `-` negates a qualifier or a word
    app:"my app"               double quotes keep spaces in a value

Several values of one qualifier are alternatives (`app:api app:web`); different qualifiers,
negations, words and `created:` terms all have to hold. Anything else is a QueryError naming the token.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone

from sqlalchemy import and_, exists, func, literal_column, not_, or_, select, true
from sqlalchemy.orm import aliased

from intercity.audit.categories import CATEGORIES, LABELS
from intercity.models import AuditEntry, Operation
from intercity.models.operation import PENDING

QUALIFIERS = ("actor", "action", "key", "domain", "target", "app", "server", "category", "outcome", "created")
OS_USER_KINDS = ("cli", "system")  # the actors that record who ran them on the machine (audit.actor)
TEXT = "text"  # the qualifier of a free-text term (a bare word or a quoted phrase)
OUTCOMES = {"pending": PENDING, "applied": ("succeeded",), "failed": ("failed",)}
# The entries an operation's end writes; the timeline folds them into the entry that asked for the work.
OUTCOME_ACTIONS = ("operation.succeeded", "operation.failed")
CHIPS = tuple(LABELS.items())
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
            if value == "":
                raise QueryError(f"{raw!r} has nothing to search for: write a word after the -, or use "
                                 "quotes around a phrase.", raw)
            terms.append(Term(TEXT, value, bool(negated), raw))
            continue
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


def _prefix(column, value: str):
    """Starts with `value` (`*` inside it still a wildcard)."""
    return column.like(_like(value) + ("" if value.endswith("*") else "%"), escape="\\")


def _actor(value: str, negated: bool):
    wrap = _nullsafe if negated else (lambda c: c)
    # Worker and CLI entries carry the person they act for in actor_email: "on behalf of" matches too.
    # Emails are stored lowercased; OS user names keep their case.
    # Only the CLI and system actors carry an OS user: naming their kinds lets every branch use an index.
    return or_(_prefix(wrap(AuditEntry.actor_email), value.lower()), _match(wrap(AuditEntry.actor_kind), value),
               and_(AuditEntry.actor_kind.in_(OS_USER_KINDS), _prefix(wrap(AuditEntry.actor_os_user), value)))


def _action(value: str, negated: bool):
    value = value.lower()
    if "*" in value or "." in value:
        return _match(AuditEntry.action, value)
    # A bare prefix such as action:env_var means every env_var.* action.
    return or_(AuditEntry.action == value, AuditEntry.action.like(_like(value) + ".%", escape="\\"))


def _target(target_type: str | None, lowercase: bool = False):
    """key:, domain:, target: what an entry changed, by its label (an env var's name, a hostname)."""

    def build(value: str, negated: bool):
        value = value.lower() if lowercase else value
        label = _match(_nullsafe(AuditEntry.target_label) if negated else AuditEntry.target_label, value)
        if target_type is None:
            return label
        kind = _nullsafe(AuditEntry.target_type) if negated else AuditEntry.target_type
        return and_(kind == target_type, label)

    return build


# The entry's sentence as free text searches it: who, what it changed, where. The same expression is
# indexed (a trigram index on PostgreSQL, migration 0007), so keep the two identical.
SENTENCE_SQL = ("lower(coalesce({t}actor_email, '') || ' ' || coalesce({t}actor_os_user, '') || ' ' || "
                "coalesce({t}target_label, '') || ' ' || coalesce({t}app_name, '') || ' ' || "
                "coalesce({t}server_name, ''))")
_SENTENCE = literal_column(SENTENCE_SQL.format(t="audit_entries."))


def _text(value: str, negated: bool):
    # Never NULL (every part is coalesced), so a negated word keeps every entry without it.
    return _SENTENCE.like("%" + _like(value.lower()) + "%", escape="\\")


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
    "key": _target("env_var"),
    "domain": _target("domain", lowercase=True),
    "target": _target(None),
    TEXT: _text,
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
        elif term.qualifier in ("created", TEXT):  # each word has to be there, like each date bound
            result.append(condition)
        else:
            alternatives.setdefault(term.qualifier, []).append(condition)
    for options in alternatives.values():
        result.append(options[0] if len(options) == 1 else or_(*options))
    return result


# -- what a timeline shows ------------------------------------------------------------------------

@functools.cache
def folded():
    """Outcome entries that belong to an entry which requested the work: shown inside it, not alone.

    Built once: every timeline query uses it, and SQLAlchemy expressions are immutable."""
    requester = aliased(AuditEntry)
    return and_(
        AuditEntry.action.in_(OUTCOME_ACTIONS),
        exists().where(requester.operation_id == AuditEntry.operation_id,
                       requester.action.not_in(OUTCOME_ACTIONS)),
    )


def _category_name(value: str) -> str:
    name = value.strip().lower()
    return _CATEGORY_ALIASES.get(name, name)


@dataclass
class Filter:
    """What one timeline view shows: its scope and the query box, where the chips write `category:` terms.

    The query is the whole filter, so the box, the chips and the URL (`?q=`) always agree. Categories
    passed in (the CLI's --category, older links' `?category=`) become `category:` terms of it.
    """

    query: str = ""
    categories: tuple[str, ...] = ()
    scope: list = field(default_factory=list)  # conditions fixed by the page (a server, an app)

    def __post_init__(self):
        self.query = (self.query or "").strip()
        for name in self.categories:
            if name not in self.categories_in_query():
                self.query = _with_category(self.query, name)
        self.categories = self.categories_in_query()

    @classmethod
    def from_args(cls, args, scope: list | None = None) -> "Filter":
        chosen = []
        for value in args.getlist("category"):
            for name in value.split(","):
                name = _category_name(name)
                if name in CATEGORIES and name not in chosen:
                    chosen.append(name)
        return cls(query=args.get("q") or "", categories=tuple(chosen), scope=list(scope or []))

    def _terms(self) -> list[Term] | None:
        try:
            return tokens(self.query)
        except QueryError:
            return None

    def categories_in_query(self) -> tuple[str, ...]:
        """The chips this query presses: its categories, not negated (none while it cannot be read)."""
        chosen = []
        for term in self._terms() or []:
            name = _category_name(term.value)
            if term.qualifier == "category" and not term.negated and name in CATEGORIES and name not in chosen:
                chosen.append(name)
        return tuple(chosen)

    def conditions(self) -> list:
        """All conditions of this view; raises QueryError for a bad query."""
        return [*self.scope, *conditions(self.query)]

    def describe(self) -> str:
        return f"query {self.query}" if self.query else ""

    def args(self, **extra) -> dict:
        """URL parameters that reproduce this filter (for links, print, export)."""
        values = {"q": self.query} if self.query else {}
        values.update({k: v for k, v in extra.items() if v is not None})
        return values

    def toggled(self, category: str | None) -> dict:
        """URL parameters with one chip pressed or released (None: the All chip releases them all)."""
        terms = self._terms()
        if terms is None:  # an unreadable query: pressing a chip adds its term, the box says what is wrong
            text = self.query if category is None or category in self.categories else \
                _with_category(self.query, category)
            return {"q": text} if text else {}
        if category is not None and category not in self.categories:
            text = _with_category(self.query, category)
        else:
            kept = [t for t in terms if not (t.qualifier == "category" and not t.negated
                                             and (category is None or _category_name(t.value) == category))]
            text = " ".join(t.token for t in kept)
        return {"q": text} if text else {}


def _with_category(text: str, category: str) -> str:
    """`text` with a `category:` term added after the categories it has (first when it has none)."""
    try:
        terms = tokens(text)
    except QueryError:
        return f"category:{category} {text}".strip()
    last = max((i for i, t in enumerate(terms) if t.qualifier == "category"), default=-1)
    parts = [t.token for t in terms]
    parts.insert(last + 1, f"category:{category}")
    return " ".join(parts)


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
