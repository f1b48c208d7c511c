"""Never a secret in a log line: what the suite's log watch looks for.

Every password the suite gives a Dovecot user is registered here (the ``dovecot``
fixture wraps ``add_user``), and tests may register more. :func:`needles` turns
them into the byte strings that must never appear in a log line: the password
(UTF-8) and the base64 of each SASL PLAIN message a client could send with it --
with and without an authorization identity -- at all three byte alignments, since
a payload logged inside a longer base64 string would be encoded from any offset.
"""

from __future__ import annotations

import base64

__all__ = ["SecretWatch", "plain_fragments"]

#: Shorter passwords would match innocent text ("pass" in "password").
MIN_SECRET = 8


def plain_fragments(message: bytes) -> list[bytes]:
    """The base64 text that encodes ``message`` at each of the three alignments,
    cut to the characters that depend on ``message`` alone.

    At alignment ``k`` the message starts ``k`` octets into a 3-octet group:
    encode it behind ``k`` filler octets and drop the characters that also carry
    filler bits (the first group) and the last, padded group."""
    fragments = []
    for k in range(3):
        encoded = base64.b64encode(b"\0" * k + message)
        start = 4 if k else 0  # the group holding filler octets
        full_groups = (k + len(message)) // 3
        end = full_groups * 4  # the last complete group
        fragment = encoded[start:end]
        if len(fragment) >= 8:
            fragments.append(fragment)
    return fragments


class SecretWatch:
    """The secrets of a test run (see the module docstring)."""

    def __init__(self) -> None:
        self._users: dict[str, str] = {}
        self._extra: set[str] = set()

    def add_user(self, name: str, password: str) -> None:
        self._users[name] = password

    def add_secret(self, secret: str) -> None:
        self._extra.add(secret)

    def needles(self) -> dict[bytes, str]:
        """Byte string -> a description of what it is (never the secret itself)."""
        found: dict[bytes, str] = {}
        for name, password in self._users.items():
            if len(password) >= MIN_SECRET:
                found[password.encode()] = f"the password of {name}"
            user, octets = name.encode(), password.encode()
            for authzid in (b"", user):
                for fragment in plain_fragments(authzid + b"\0" + user + b"\0" + octets):
                    found[fragment] = f"a SASL PLAIN payload of {name} (base64)"
        for extra in self._extra:
            if len(extra) >= MIN_SECRET:
                found[extra.encode()] = "a registered secret"
        return found

    def leaks(self, text: bytes) -> list[str]:
        """What of the secrets ``text`` contains (descriptions, de-duplicated)."""
        return sorted({what for needle, what in self.needles().items() if needle in text})
