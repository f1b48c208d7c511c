"""The log watch itself: it finds what it must find (see tests/secret_watch.py)."""

from __future__ import annotations

import base64
import json

from hypothesis import given
from hypothesis import strategies as st
from secret_watch import SecretWatch, plain_fragments


@given(
    message=st.binary(min_size=12, max_size=80),
    before=st.binary(max_size=10),
    after=st.binary(max_size=10),
)
def test_a_fragment_is_found_at_any_alignment(message: bytes, before: bytes, after: bytes) -> None:
    encoded = base64.b64encode(before + message + after)
    assert any(fragment in encoded for fragment in plain_fragments(message))


def test_leaks_names_what_was_found_never_the_secret() -> None:
    watch = SecretWatch()
    watch.add_user("alice", "correct horse battery")
    payload = base64.b64encode(b"\0alice\0correct horse battery").decode()
    for line, expected in [
        ({"event": "x", "note": "correct horse battery"}, ["the password of alice"]),
        ({"event": "x", "wire": "a AUTHENTICATE PLAIN " + payload}, ["a SASL PLAIN payload"]),
        ({"event": "x", "wire": "QUJD" + payload}, ["a SASL PLAIN payload"]),
        ({"event": "login", "user": "alice"}, []),
    ]:
        leaks = watch.leaks(json.dumps(line).encode())
        assert [leak.split(" of ")[0] for leak in leaks] == [
            item.split(" of ")[0] for item in expected
        ]
        assert all("correct horse" not in leak for leak in leaks)


def test_short_passwords_are_not_searched_for() -> None:
    watch = SecretWatch()
    watch.add_user("bob", "pass")
    assert watch.leaks(b'{"event": "password accepted"}') == []
