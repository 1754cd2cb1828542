"""The category table: one row per action the code can write, the same as the one docs/DEVELOPING.md publishes."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import intercity
from intercity.audit import categories
from intercity.audit.categories import ACTIONS, BY_KIND, CATEGORIES, LABELS, category_of, is_alerted
from intercity.extensions import db
from intercity.jobs.kinds import KINDS
from intercity.models.operation import FINAL

ROOT = Path(intercity.__file__).parent
DOCS = ROOT.parent / "docs" / "DEVELOPING.md"


def published() -> dict[str, tuple[str, bool]]:
    """The table under "Categories and alerts" in docs/DEVELOPING.md, read back into the code's form."""
    text = DOCS.read_text()
    section = text.split("## Categories and alerts", 1)[1].split("\n## ", 1)[0]
    names = {label: category for category, label in LABELS.items()} | {"the operation kind's": BY_KIND}
    rows = {}
    for line in section.splitlines():
        match = re.fullmatch(r"\| `([^`]+)` \| ([^|]+) \| (yes|no) \|", line.strip())
        if match:
            action, category, alerted = match.groups()
            assert action not in rows, f"{action} appears twice in docs/DEVELOPING.md"
            rows[action] = (names[category.strip()], alerted == "yes")
    return rows


def test_the_published_table_is_the_code_table():
    assert published() == ACTIONS
    assert list(published()) == list(ACTIONS)  # same order, so the page reads like the code


def test_every_row_names_a_known_category():
    assert {category for category, _ in ACTIONS.values()} <= {*CATEGORIES, BY_KIND}
    assert set(LABELS) == set(CATEGORIES)


def _record_event_actions() -> set[str]:
    """Actions passed to record_event anywhere in the package: literals, and f-strings expanded below."""
    found = set()
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None))
                    == "record_event" and len(node.args) >= 2):
                continue
            action = node.args[1]
            if isinstance(action, ast.Constant):
                found.add(action.value)
            elif isinstance(action, ast.JoinedStr) and ast.unparse(action) == "f'operation.{status}'":
                found |= {f"operation.{status}" for status in FINAL}  # the runner's outcome entries
            else:
                pytest.fail(f"{path.name}:{node.lineno}: record_event with an action this test cannot read: "
                            f"{ast.unparse(action)}; teach the test or pass a literal")
    return found


def _explained_actions() -> set[str]:
    """Actions that `capture.explain(row, action, ...)` gives row changes (what a drift check found)."""
    found = set()
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None))
                    == "explain" and len(node.args) >= 2):
                continue
            action = node.args[1]
            if isinstance(action, ast.Constant):
                if action.value is not None:
                    found.add(action.value)
            elif not (isinstance(action, ast.Name) and action.id == "action"):  # a helper passing its own literal
                pytest.fail(f"{path.name}:{node.lineno}: explain with an action this test cannot read: "
                            f"{ast.unparse(action)}; pass a literal")
    return found


def written_actions() -> set[str]:
    """Every action the code can write: each audited model's, the operation kinds', the explicit events."""
    actions = set()
    for mapper in db.Model.registry.mappers:
        rule = getattr(mapper.class_, "__audit__", None)
        if rule is not None:
            actions |= rule.possible_actions()
    actions |= {kind.request_action for kind in KINDS.values() if kind.request_action}
    return actions | _record_event_actions() | _explained_actions()


def test_every_action_the_code_can_write_has_a_row():
    written = written_actions()
    # The scan finds what is there: row changes of every audited model and the explicit events.
    assert {"user.created", "env_var.updated", "server.host_key_pinned", "app.restart_requested",
            "operation.retry_requested", "operation.failed", "user.login", "audit.exported",
            "server.host_key_mismatch", "env_var.changed_outside", "deploy_key.added_outside"} <= written
    assert sorted(written - set(ACTIONS)) == []


def test_operation_actions_follow_their_kind_and_others_are_fixed():
    assert category_of("operation.failed", "security") == "security"
    assert category_of("operation.succeeded", "app") == "app"
    with pytest.raises(ValueError, match="operation kind's category"):
        category_of("operation.failed")
    # A request of its own is filed where its kind is.
    for kind in KINDS.values():
        if kind.request_action:
            assert category_of(kind.request_action, kind.category) == kind.category
    with pytest.raises(ValueError, match="no row"):
        is_alerted("user.did_something")


@pytest.mark.parametrize("actions, category, alerted", [
    (("deploy_key.created", "deploy_key.deleted", "env_var.created", "env_var.updated", "env_var.deleted",
      "env_var.revealed", "server.host_key_mismatch", "user.role_changed", "user.invited", "invitation.revoked",
      "user.deleted", "user.deactivated", "user.2fa_disabled", "user.login_failures_repeated"), "security", True),
    (("user.created", "invitation.accepted", "user.email_changed", "user.login", "user.logout"), "team", False),
    (("audit.verified", "audit.exported"), "security", False),
])
def test_the_categories_people_expect(actions, category, alerted):
    for action in actions:
        assert (category_of(action), is_alerted(action)) == (category, alerted), action


def test_account_actions_to_come_have_their_names_reserved():
    names = ("user.invited", "invitation.accepted", "invitation.revoked", "user.role_changed", "user.deactivated",
             "user.reactivated", "user.deleted", "user.email_changed", "user.password_changed", "user.login",
             "user.logout", "user.login_failed", "user.login_failures_repeated", "user.2fa_enabled",
             "user.2fa_disabled", "user.session_ended", "settings.changed", "notification_target.added",
             "notification_target.removed", "digest.unsubscribed")
    assert set(names) <= set(categories.ACTIONS)
