"""The value history keeps what a server held, encrypted, after the row is gone, and only so many values."""
from intercity import crypto
from intercity.extensions import db
from intercity.models import AppliedValue
from intercity.services import value_history


def test_values_are_kept_encrypted_once_per_change_and_pruned(app):
    with app.app_context():
        for value in ["one", "one", "two", "three", "four"]:
            value_history.remember("env", server_id=1, app_id=7, name="TOKEN", value=value,
                                   fingerprint=crypto.fingerprint(value), keep=3)
        db.session.commit()
        rows = db.session.query(AppliedValue).order_by(AppliedValue.id).all()
        assert [row.value for row in rows] == ["two", "three", "four"]
        assert all(b"three" not in row.value_encrypted for row in rows)
        assert value_history.latest("env", server_id=1, app_id=7, name="TOKEN").value == "four"
        assert value_history.find("env", server_id=1, app_id=7, name="TOKEN",
                                  fingerprint=crypto.fingerprint("two")).value == "two"
        assert value_history.find("env", server_id=1, app_id=7, name="TOKEN",
                                  fingerprint=crypto.fingerprint("one")) is None
        # Another app's variable of the same name is another history.
        assert value_history.latest("env", server_id=1, app_id=8, name="TOKEN") is None
        assert value_history.latest("deploy_key", server_id=1, app_id=None, name="TOKEN") is None


def test_several_values_are_kept_like_one_at_a_time_in_the_same_few_queries(app):
    from sqlalchemy import event

    statements = []

    def count(*args):
        statements.append(args[2])

    with app.app_context():
        values = {f"KEY_{n}": (f"value {n}", crypto.fingerprint(f"value {n}")) for n in range(20)}
        value_history.remember_many("env", server_id=1, app_id=7, values={"KEY_0": values["KEY_0"]}, keep=2)
        event.listen(db.engine, "before_cursor_execute", count)
        try:
            value_history.remember_many("env", server_id=1, app_id=7, values=values, keep=2)
            first = len(statements)
            changed = {key: (value + " again", crypto.fingerprint(value + " again")) for key, (value, _) in values.items()}
            value_history.remember_many("env", server_id=1, app_id=7, values=changed, keep=2)
            second = len(statements) - first
        finally:
            event.remove(db.engine, "before_cursor_execute", count)
        db.session.commit()
        # One read, one insert of every row and one delete: the number of names adds no statements.
        assert first <= 3 and second <= 3
        history = {}
        for row in db.session.query(AppliedValue).order_by(AppliedValue.id):
            history.setdefault(row.name, []).append(row.value)
        # KEY_0's first value was seen again, not kept twice; each keeps its two newest.
        assert history["KEY_0"] == ["value 0", "value 0 again"]
        assert all(history[f"KEY_{n}"] == [f"value {n}", f"value {n} again"] for n in range(20))
        value_history.remember_many("env", server_id=1, app_id=7,
                                    values={"KEY_3": (v := "third", crypto.fingerprint(v))}, keep=2)
        db.session.commit()
        assert [row.value for row in db.session.query(AppliedValue).filter_by(name="KEY_3")
                .order_by(AppliedValue.id)] == ["value 3 again", "third"]
