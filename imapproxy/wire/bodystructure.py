"""ENVELOPE and BODYSTRUCTURE (RFC 9051 sections 7.5.2 and 9), read leniently.

Both structures are read in two steps: the generic value reader turns the bytes
into nested tuples (so every spacing oddity is handled in one place), then the
tuples are interpreted field by field. Real servers break this grammar in many
ways (QUIRKS B1-B11); each is read as the closest sensible structure rather than
refused, because a proxy must not lose a response over a malformed MIME
description:

* NIL where a string is due (encoding, parameter values, type) reads as empty or
  as ``application/octet-stream``; ``()`` where NIL is due reads as NIL.
* NIL, negative or floating-point sizes and line counts read as numbers
  (NIL and negatives as 0).
* a message/rfc822 part without envelope, body and lines reads as a basic part;
  a multipart with no children reads as such.
* NIL entries inside an address list are skipped; an envelope wrapped in an extra
  pair of parentheses is unwrapped; missing trailing fields are NIL.

The structures are for features that need them (the cache, rules); the relay
always forwards the original bytes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from imapproxy.wire.reader import Atom, Literal, Reader, Value

__all__ = [
    "Address",
    "Body",
    "BodyPart",
    "Envelope",
    "Multipart",
    "read_body",
    "read_envelope",
]

_MAX_DEPTH = 48


@dataclass(frozen=True, slots=True)
class Address:
    """``(name adl mailbox host)``; a NIL host marks RFC 5322 group syntax."""

    name: bytes | None
    adl: bytes | None
    mailbox: bytes | None
    host: bytes | None

    @property
    def email(self) -> str | None:
        """``mailbox@host`` as text, or None for group markers."""
        if self.mailbox is None or self.host is None:
            return None
        return (self.mailbox + b"@" + self.host).decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class Envelope:
    date: bytes | None
    subject: bytes | None
    from_: tuple[Address, ...] | None
    sender: tuple[Address, ...] | None
    reply_to: tuple[Address, ...] | None
    to: tuple[Address, ...] | None
    cc: tuple[Address, ...] | None
    bcc: tuple[Address, ...] | None
    in_reply_to: bytes | None
    message_id: bytes | None


Params = tuple[tuple[bytes, bytes], ...]
Disposition = tuple[bytes, Params]


@dataclass(frozen=True, slots=True)
class BodyPart:
    """A non-multipart body part.

    ``type`` and ``subtype`` are upper-case text. ``lines`` is set for text parts
    and message/rfc822; ``envelope`` and ``body`` for message/rfc822 (and
    message/global). Extension fields are ``None`` when absent (BODY rather than
    BODYSTRUCTURE).
    """

    type: str
    subtype: str
    params: Params
    id: bytes | None
    description: bytes | None
    encoding: bytes
    size: int
    lines: int | None = None
    envelope: Envelope | None = None
    body: Body | None = None
    md5: bytes | None = None
    disposition: Disposition | None = None
    language: tuple[bytes, ...] | None = None
    location: bytes | None = None
    extensions: tuple[Value, ...] = ()

    @property
    def mime_type(self) -> str:
        return f"{self.type}/{self.subtype}".lower()


@dataclass(frozen=True, slots=True)
class Multipart:
    parts: tuple[Body, ...]
    subtype: str
    params: Params | None = None
    disposition: Disposition | None = None
    language: tuple[bytes, ...] | None = None
    location: bytes | None = None
    extensions: tuple[Value, ...] = ()

    @property
    def mime_type(self) -> str:
        return f"multipart/{self.subtype}".lower()


Body = BodyPart | Multipart


def walk(body: Body) -> Iterator[tuple[tuple[int, ...], Body]]:
    """Every part with its part number (RFC 9051 section 6.4.5 numbering).

    A single-part message is part ``(1,)``; a multipart's children are ``(1,)``,
    ``(2,)``...; the body inside a message/rfc822 part ``p`` is ``p`` + children
    (or ``p + (1,)`` if it is not multipart). The top-level multipart is ``()``.
    """
    if isinstance(body, Multipart):
        yield (), body
        yield from _walk_children(body, ())
    else:
        yield (1,), body
        yield from _walk_nested(body, (1,))


def _walk_children(
    multi: Multipart, prefix: tuple[int, ...]
) -> Iterator[tuple[tuple[int, ...], Body]]:
    for i, part in enumerate(multi.parts, 1):
        number = (*prefix, i)
        yield number, part
        if isinstance(part, Multipart):
            yield from _walk_children(part, number)
        else:
            yield from _walk_nested(part, number)


def _walk_nested(part: BodyPart, number: tuple[int, ...]) -> Iterator[tuple[tuple[int, ...], Body]]:
    inner = part.body
    if inner is None:
        return
    if isinstance(inner, Multipart):
        yield from _walk_children(inner, number)
    else:
        yield (*number, 1), inner
        yield from _walk_nested(inner, (*number, 1))


# -- reading ----------------------------------------------------------------------


def read_envelope(reader: Reader) -> Envelope:
    value = reader.value()
    if not isinstance(value, tuple):
        raise reader.error("Expected envelope")
    return envelope_from_value(value)


def read_body(reader: Reader) -> Body:
    value = reader.value()
    if not isinstance(value, tuple):
        raise reader.error("Expected body structure")
    try:
        return body_from_value(value, 0)
    except ValueError as exc:
        raise reader.error(str(exc)) from exc


def _text(value: Value) -> bytes | None:
    """An nstring, leniently: atoms as their bytes, ``()`` as NIL."""
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, Atom):
        return value.value
    if isinstance(value, Literal):
        return None if value.streamed else value.data
    return None


def _number(value: Value) -> int:
    """A size or line count, rectified: NIL and negatives 0, floats truncated."""
    raw = _text(value)
    if raw is None or len(raw) > 24:
        return 0
    try:
        number = int(raw)
    except ValueError:
        try:
            as_float = float(raw)
        except ValueError:
            return 0
        if not math.isfinite(as_float):
            return 0
        number = int(as_float)
    return max(number, 0)


def _address(value: Value) -> Address | None:
    if not isinstance(value, tuple):
        return None
    fields = [_text(v) for v in value[:4]]
    fields += [None] * (4 - len(fields))
    return Address(fields[0], fields[1], fields[2], fields[3])


def _address_list(value: Value) -> tuple[Address, ...] | None:
    if not isinstance(value, tuple) or not value:
        return None
    addresses = [a for a in (_address(v) for v in value) if a is not None]
    return tuple(addresses) or None


def envelope_from_value(value: tuple[Value, ...]) -> Envelope:
    if len(value) == 1 and isinstance(value[0], tuple):
        value = value[0]  # wrapped in an extra pair of parentheses (QUIRKS B11)
    fields = list(value[:10]) + [None] * (10 - len(value[:10]))
    return Envelope(
        date=_text(fields[0]),
        subject=_text(fields[1]),
        from_=_address_list(fields[2]),
        sender=_address_list(fields[3]),
        reply_to=_address_list(fields[4]),
        to=_address_list(fields[5]),
        cc=_address_list(fields[6]),
        bcc=_address_list(fields[7]),
        in_reply_to=_text(fields[8]),
        message_id=_text(fields[9]),
    )


def _params(value: Value) -> Params:
    if not isinstance(value, tuple):
        return ()
    items = [_text(v) or b"" for v in value]
    return tuple((items[i], items[i + 1]) for i in range(0, len(items) - 1, 2))


def _disposition(value: Value) -> Disposition | None:
    if not isinstance(value, tuple) or not value:
        return None
    kind = _text(value[0]) or b""
    return (kind, _params(value[1] if len(value) > 1 else None))


def _language(value: Value) -> tuple[bytes, ...] | None:
    if isinstance(value, tuple):
        return tuple(t for t in (_text(v) for v in value) if t is not None)
    text = _text(value)
    return None if text is None else (text,)


def _upper(value: Value, default: str) -> str:
    text = _text(value)
    return text.decode("latin-1").upper() if text else default


def body_from_value(value: tuple[Value, ...], depth: int) -> Body:
    if depth > _MAX_DEPTH:
        raise ValueError("body structure nested too deep")
    if value and isinstance(value[0], tuple):
        return _multipart(value, depth)
    if len(value) < 7:
        # A multipart without children (QUIRKS B5): "(NIL "alternative" ...)" or
        # "("ALTERNATIVE")".
        subtype_at = 1 if value and value[0] is None and len(value) > 1 else 0
        rest = value[subtype_at + 1 :]
        return Multipart(
            (),
            _upper(value[subtype_at] if value else None, "MIXED"),
            _params(rest[0]) if rest else None,
            _disposition(rest[1]) if len(rest) > 1 else None,
        )
    return _single(value, depth)


def _multipart(value: tuple[Value, ...], depth: int) -> Multipart:
    count = 0
    while count < len(value) and isinstance(value[count], tuple):
        count += 1
    parts = tuple(body_from_value(v, depth + 1) for v in value[:count] if isinstance(v, tuple))
    rest = value[count:]
    ext = list(rest[1:])
    return Multipart(
        parts,
        _upper(rest[0] if rest else None, "MIXED"),
        _params(ext[0]) if ext else None,
        _disposition(ext[1]) if len(ext) > 1 else None,
        _language(ext[2]) if len(ext) > 2 else None,
        _text(ext[3]) if len(ext) > 3 else None,
        tuple(ext[4:]),
    )


def _single(value: tuple[Value, ...], depth: int) -> BodyPart:
    if _text(value[0]) is None or _text(value[1]) is None:
        type_, subtype = "APPLICATION", "OCTET-STREAM"  # QUIRKS B6: type or subtype NIL
    else:
        type_, subtype = _upper(value[0], ""), _upper(value[1], "")
    rest = list(value[7:])
    lines = None
    envelope = None
    body: Body | None = None
    is_message = type_ == "MESSAGE" and subtype in ("RFC822", "GLOBAL")
    if is_message and len(rest) >= 3 and isinstance(rest[0], tuple) and isinstance(rest[1], tuple):
        envelope = envelope_from_value(rest[0])
        body = body_from_value(rest[1], depth + 1)
        lines = _number(rest[2])
        rest = rest[3:]
    elif type_ == "TEXT" and rest:
        lines = _number(rest[0])
        rest = rest[1:]
    return BodyPart(
        type_,
        subtype,
        _params(value[2]),
        _text(value[3]),
        _text(value[4]),
        _text(value[5]) or b"",
        _number(value[6]),
        lines,
        envelope,
        body,
        _text(rest[0]) if rest else None,
        _disposition(rest[1]) if len(rest) > 1 else None,
        _language(rest[2]) if len(rest) > 2 else None,
        _text(rest[3]) if len(rest) > 3 else None,
        tuple(rest[4:]),
    )
