"""Values Dokku cannot store are refused: the panel's rule agrees with godotenv 1.5.1's write-then-parse.

Dokku writes an app's ENV file with godotenv.Marshal and reads it with godotenv's parser; the
Dokku double carries a port of both, and the golden records of real Dokku 0.38.27 confirm that
port (tests/test_dokku_golden.py). A value is storable when writing and reading gives it back
(integer-looking values come back as the number, which the read-back reports instead).
"""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from intercity.services.env import EnvBlockError, parse_block
from intercity.validation import ValidationError, dokku_storage_problem, env_value
from tests.support.sshd import _double

# The characters godotenv's writer escapes or its parser treats specially, plus a few others.
TRICKY = st.text(alphabet=st.sampled_from('"\\\'$!`{}()#=\n\r\t aZ09_-+.é✓'), max_size=12)
ANY_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20)
VALUES = st.one_of(TRICKY, ANY_TEXT)


def comes_back(value: str, env: dict[str, str] | None = None, key: str = "K") -> bool:
    """Write the config with godotenv.Marshal, parse it with godotenv: is `value` given back?"""
    stored = {k: v.encode() for k, v in (env or {}).items()}
    stored[key] = value.encode()
    parsed, error = _double.godotenv_parse(_double.godotenv_marshal(stored) + b"\n")
    if error or key not in parsed:
        return False
    number = _double.godotenv_atoi(value.encode())
    return parsed[key] == (str(number).encode() if number is not None else value.encode())


@settings(max_examples=400, deadline=None)
@given(VALUES)
def test_the_rule_is_godotenvs_write_then_parse(value):
    assert (dokku_storage_problem(value) is None) == comes_back(value)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.from_regex(r"[A-Z_][A-Z0-9_]{0,5}", fullmatch=True), VALUES, min_size=1, max_size=5))
def test_values_the_rule_accepts_never_break_their_neighbours(env):
    storable = {key: value for key, value in env.items() if dokku_storage_problem(value) is None}
    for key, value in storable.items():
        assert comes_back(value, storable, key), (key, value)


@pytest.mark.parametrize("value, fragment", [
    ('it\'s "quoted"', "ends with a double quote"),
    ("ends with backslash\\", "ends with a backslash"),
])
def test_a_value_dokku_cannot_store_is_refused_with_the_reason(value, fragment):
    with pytest.raises(ValidationError) as raised:
        env_value(value)
    assert raised.value.field == "value" and fragment in raised.value.message
    assert "Add a character" in raised.value.message


def test_values_dokku_gives_back_are_accepted():
    for value in ('"quoted" inside', "C:\\dir\\file", "$(whoami) `id` ${HOME}", "a\nb", "", "007"):
        assert env_value(value) == value


def test_a_pasted_block_names_each_line_dokku_cannot_store():
    with pytest.raises(EnvBlockError) as raised:
        parse_block('GOOD=1\nQUOTE="say \\"hi\\""\nOK="a\\\\b"\nSLASH=C:\\\n')
    assert [(number, "ends with a" in message) for number, message in raised.value.lines] == [(2, True), (4, True)]
    assert "double quote" in raised.value.lines[0][1] and "backslash" in raised.value.lines[1][1]
