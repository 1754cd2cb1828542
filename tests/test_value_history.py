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
