"""A deterministic, realistic Maildir++ mail corpus for tests, benchmarks and the demo.

:func:`write_corpus` builds about a hundred messages with the stdlib :mod:`email`
package (legacy ``compat32`` API, so every header and payload is written exactly as
given) and stores them as a Maildir++ tree the way Dovecot itself would: one ``.Name``
directory per folder with ``.`` as the on-disk hierarchy separator, folder names in
modified UTF-7 (RFC 3501 section 5.1.3), message files in ``cur/`` named
``<time>.M<n>P1.imapproxy,S=<size>,W=<vsize>:2,<flags>``, LF line ends on disk (what
Dovecot writes; IMAP clients receive CRLF, whose size is the ``W=`` value), the file
mtime set to the INTERNALDATE, plus ``dovecot-uidlist`` (fixed UIDVALIDITY and UIDs
1..n in date order), ``dovecot-keywords`` and ``subscriptions``. The same bytes come
out on every run: one seeded :class:`random.Random` drives all choices, dates are fixed
and every MIME boundary and Message-ID is set explicitly.

What is in it (see :data:`FOLDERS`): INBOX with the bulk of the mail, the special-use
folders Sent, Drafts, Trash, Junk and Archive, Archive/2024, Shared/Projects (mailing
list traffic for rule tests) and two folders with non-ASCII names. Message kinds:
plain text in 7bit, 8bit UTF-8, 8bit ISO-8859-1, quoted-printable and ISO-2022-JP;
text+HTML multipart/alternative; attachments from 2 KB to 3 MiB (base64); a
multipart/related HTML mail with an inline image; a forwarded message/rfc822 that has
its own attachment; RFC 2047 B- and Q-encoded headers; RFC 2231 file names; threads
with In-Reply-To/References; many recipients; very long folded headers and an empty
body. Flags come from the file names (``S``, ``F``, ``R``, ``D``, ``T`` and keyword
letters), some messages are unseen.

:func:`install_corpus` gives a user a private copy of a written template cheaply:
message files are hard-linked (Maildir never rewrites a message file in place; flag
changes rename and expunges unlink), metadata files that Dovecot may append to are
copied. :class:`CorpusSummary` describes what was written so tests can check counts,
sizes, flags and UIDs without parsing the tree again.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import io
import os
import quopri
import random
import shutil
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from email import base64mime, policy, quoprimime
from email.generator import BytesGenerator
from email.message import Message
from email.utils import format_datetime
from html import escape
from pathlib import Path

from imapproxy.wire.values import mutf7_encode

__all__ = [
    "CORPUS_SEED",
    "FOLDERS",
    "KEYWORDS",
    "CorpusFolder",
    "CorpusMessage",
    "CorpusSummary",
    "FolderSpec",
    "encode_mailbox_name",
    "install_corpus",
    "write_corpus",
]

CORPUS_SEED = 20240917
"""Seed of the random generator behind every choice in the corpus."""

KEYWORDS: tuple[str, ...] = ("$Forwarded", "$MDNSent", "$Junk", "$NotJunk", "Important")
"""IMAP keywords used by the corpus, in ``dovecot-keywords`` order (letters a, b, ...)."""

_FLAG_LETTERS = {"\\Draft": "D", "\\Flagged": "F", "\\Answered": "R", "\\Seen": "S"}
_FLAG_LETTERS["\\Deleted"] = "T"
_UIDVALIDITY_BASE = 1704067200  # 2024-01-01T00:00:00Z; folder i gets BASE + i
_METADATA_MTIME = 1714521600  # 2024-05-01T00:00:00Z, after the newest message
_HOSTNAME = "imapproxy"
_OWNER = ("Pat Doe", "pat@example.org")


@dataclass(frozen=True, slots=True, kw_only=True)
class FolderSpec:
    """A folder of the corpus: IMAP name (``/`` separated, Unicode) and special use."""

    name: str
    special_use: str | None = None


FOLDERS: tuple[FolderSpec, ...] = (
    FolderSpec(name="INBOX"),
    FolderSpec(name="Sent", special_use="\\Sent"),
    FolderSpec(name="Drafts", special_use="\\Drafts"),
    FolderSpec(name="Trash", special_use="\\Trash"),
    FolderSpec(name="Junk", special_use="\\Junk"),
    FolderSpec(name="Archive", special_use="\\Archive"),
    FolderSpec(name="Archive/2024"),
    FolderSpec(name="Shared/Projects"),
    FolderSpec(name="Shared/Projects/日本語"),
    FolderSpec(name="Entwürfe"),
)
"""Every folder the corpus creates, in creation order. ``Shared`` itself has no
directory, so Dovecot lists it as ``\\Noselect \\HasChildren``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CorpusMessage:
    """One message file of the corpus as written to disk."""

    folder: str
    """IMAP name of the folder (Unicode, ``/`` separated)."""
    uid: int
    path: str
    """Path of the file relative to the Maildir root, e.g. ``.Sent/cur/...:2,S``."""
    size: int
    """Bytes on disk (LF line ends)."""
    rfc822_size: int
    """Size with CRLF line ends: what IMAP reports as RFC822.SIZE and sends in BODY[]."""
    flags: tuple[str, ...]
    """IMAP flags and keywords, e.g. ``("\\\\Seen", "$Forwarded")``."""
    internaldate: datetime
    message_id: str
    subject: str
    """The Subject as written (RFC 2047 encoded words are left encoded)."""
    kind: str
    """What the message exercises, e.g. ``plain``, ``alternative``, ``attachment``."""

    @property
    def seen(self) -> bool:
        return "\\Seen" in self.flags

    def read_bytes(self, maildir: str | os.PathLike[str]) -> bytes:
        """The message file's bytes under ``maildir`` (a template or a user's copy)."""
        return (Path(maildir) / self.path).read_bytes()


@dataclass(frozen=True, slots=True, kw_only=True)
class CorpusFolder:
    """A folder of the written corpus and the messages in it, in UID order."""

    name: str
    """IMAP name (Unicode, ``/`` separated)."""
    wire_name: str
    """The name as sent on the wire: modified UTF-7."""
    disk_name: str
    """Directory under the Maildir root (``""`` for INBOX, else ``.A.B`` in mUTF-7)."""
    special_use: str | None
    uidvalidity: int
    messages: tuple[CorpusMessage, ...]

    @property
    def count(self) -> int:
        return len(self.messages)

    @property
    def unseen(self) -> int:
        return sum(1 for m in self.messages if not m.seen)

    @property
    def size(self) -> int:
        return sum(m.size for m in self.messages)

    @property
    def uidnext(self) -> int:
        return len(self.messages) + 1


@dataclass(frozen=True, slots=True, kw_only=True)
class CorpusSummary:
    """What :func:`write_corpus` wrote: folders, messages, sizes."""

    root: Path
    """The Maildir root that was written."""
    folders: tuple[CorpusFolder, ...]

    @property
    def total_messages(self) -> int:
        return sum(f.count for f in self.folders)

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.folders)

    @property
    def messages(self) -> tuple[CorpusMessage, ...]:
        return tuple(m for f in self.folders for m in f.messages)

    def folder(self, name: str) -> CorpusFolder:
        """The folder with IMAP name ``name``; raises KeyError if there is none."""
        for f in self.folders:
            if f.name == name:
                return f
        raise KeyError(name)

    def largest(self) -> CorpusMessage:
        """The biggest message of the corpus."""
        return max(self.messages, key=lambda m: m.size)

    def of_kind(self, kind: str) -> tuple[CorpusMessage, ...]:
        """All messages whose :attr:`CorpusMessage.kind` is ``kind``."""
        return tuple(m for m in self.messages if m.kind == kind)


def encode_mailbox_name(name: str) -> str:
    """A mailbox name in modified UTF-7 (RFC 3501 section 5.1.3), as text."""
    return mutf7_encode(name).decode("ascii")


def _disk_name(name: str) -> str:
    if name == "INBOX":
        return ""
    return "." + ".".join(encode_mailbox_name(part) for part in name.split("/"))


# ---------------------------------------------------------------------------------------
# Message building blocks (compat32: headers and payloads are stored verbatim)


def _ascii(value: str) -> str:
    value.encode("ascii")  # headers are pre-encoded: a non-ASCII value is a bug here
    return value


def _encoded_words(text: str, encoding: str, charset: str = "UTF-8") -> str:
    """RFC 2047 encoded words for ``text``, split so that each stays under 76 chars."""
    words: list[str] = []
    chunk = ""
    for ch in text:
        candidate = chunk + ch
        if len(_encode_word(candidate, encoding, charset)) > 75 and chunk:
            words.append(_encode_word(chunk, encoding, charset))
            chunk = ch
        else:
            chunk = candidate
    if chunk:
        words.append(_encode_word(chunk, encoding, charset))
    return "\n ".join(words)


def _encode_word(text: str, encoding: str, charset: str) -> str:
    data = text.encode(charset)
    if encoding == "B":
        return base64mime.header_encode(data, charset).replace("?b?", "?B?", 1)
    return quoprimime.header_encode(data, charset).replace("?q?", "?Q?", 1)


def _fold_list(items: Sequence[str], header_len: int, sep: str = ",") -> str:
    """Join ``items`` with ``sep`` + space, folding before an item that would pass 78."""
    lines: list[str] = []
    line = ""
    width = header_len
    for i, item in enumerate(items):
        piece = item + (sep if i < len(items) - 1 else "")
        if not line:
            line = piece
            width += len(piece)
        elif width + 1 + len(piece) > 78:
            lines.append(line)
            line, width = piece, 1 + len(piece)
        else:
            line += " " + piece
            width += 1 + len(piece)
    lines.append(line)
    return "\n ".join(lines)


def _text_part(
    text: str,
    *,
    subtype: str = "plain",
    charset: str = "us-ascii",
    cte: str = "7bit",
    params: str = "",
) -> Message:
    part = Message()
    part["Content-Type"] = f'text/{subtype}; charset="{charset}"{params}'
    part["Content-Transfer-Encoding"] = cte
    raw = text.encode(charset.replace("us-ascii", "ascii"))
    if cte == "quoted-printable":
        payload = quopri.encodestring(raw).decode("ascii")
    elif cte == "base64":
        payload = base64.encodebytes(raw).decode("ascii")
    else:
        payload = raw.decode("ascii", "surrogateescape")
    part.set_payload(payload)
    return part


def _filename_params(filename: str) -> tuple[str, str]:
    """``name=`` and ``filename=`` parameters; RFC 2231 (and RFC 2047 for name) if needed."""
    try:
        filename.encode("ascii")
    except UnicodeEncodeError:
        quoted = urllib.parse.quote(filename, safe="")
        return (
            f'name="{_encode_word(filename, "B", "UTF-8")}"',
            f"filename*=utf-8''{quoted}",
        )
    return f'name="{filename}"', f'filename="{filename}"'


def _binary_part(
    data: bytes,
    ctype: str,
    filename: str,
    *,
    disposition: str = "attachment",
    content_id: str | None = None,
) -> Message:
    name, fname = _filename_params(filename)
    part = Message()
    part["Content-Type"] = f"{ctype};\n {name}"
    part["Content-Disposition"] = f"{disposition};\n {fname}"
    if content_id is not None:
        part["Content-ID"] = f"<{content_id}>"
    part["Content-Transfer-Encoding"] = "base64"
    part.set_payload(base64.encodebytes(data).decode("ascii"))
    return part


def _multipart(subtype: str, parts: Iterable[Message], boundary: str, params: str = "") -> Message:
    mp = Message()
    mp["Content-Type"] = f'multipart/{subtype};\n boundary="{boundary}"{params}'
    for p in parts:
        mp.attach(p)
    return mp


def _rfc822_part(inner: Message) -> Message:
    part = Message()
    part["Content-Type"] = "message/rfc822"
    part["Content-Disposition"] = "inline"
    part.attach(inner)
    return part


def _serialize(msg: Message) -> bytes:
    buf = io.BytesIO()
    BytesGenerator(buf, mangle_from_=False, maxheaderlen=0, policy=policy.compat32).flatten(msg)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------
# Content

_LOREM = (
    "the team agreed to move the release after review of open issues because "
    "customer feedback about performance and stability was mostly positive but "
    "several reports mention slow synchronisation on large folders we should "
    "measure again with the new index format before deciding next steps please "
    "check the attached numbers and let me know whether the budget for the "
    "second quarter still covers travel to the workshop in spring also the "
    "contract draft needs one more pass from legal since clause seven changed "
    "meeting notes from yesterday are below thanks for the quick turnaround on "
    "the migration plan server maintenance window is scheduled for saturday "
    "night backups were verified and the monitoring alerts look quiet again"
)
_WORDS = tuple(_LOREM.split())

_GERMAN = (
    "Hallo zusammen,\n\nanbei die Übersicht für die nächste Woche. Die Größe der "
    "Postfächer ist deutlich gewachsen; bitte prüft, ob ältere Nachrichten archiviert "
    "werden können.\n\nViele Grüße aus Köln\nJürgen\n"
)
_FRENCH = (
    "Bonjour à tous,\n\nvoici le compte rendu de la réunion de mardi. Les éléments "
    "prioritaires sont la migration des données et la mise à jour des certificats. "
    "N'hésitez pas à réagir avant vendredi.\n\nBien cordialement,\nZoë Faure\n"
)
_JAPANESE = (
    "田中です。\n\n来週の打ち合わせの資料を送ります。ご確認のほど、よろしく"
    "お願いいたします。\n\n会議室は三階の第二会議室です。\n"
)
_LATIN1 = (
    "Olá Pat,\n\no orçamento revisto está pronto. A reunião de amanhã começa às "
    "9h30 no café da esquina.\n\nAté já,\nJoão\n"
)

_PEOPLE: tuple[tuple[str, str], ...] = (
    ("Alice Martin", "alice@example.com"),
    ("Bob Okafor", "bob.okafor@example.net"),
    ("Carol Nguyen", "carol@lists.example.com"),
    ("Dmitri Volkov", "dmitri@example.net"),
    ("Erin O'Brien", "erin@example.com"),
    ("Farid Haddad", "farid@example.org"),
    ("Grace Lee", "grace.lee@example.com"),
    ("Hiro Sato", "hiro@example.jp"),
    ("Ines Duarte", "ines@example.pt"),
    ("Jonas Berg", "jonas@example.se"),
)
_UNICODE_PEOPLE: tuple[tuple[str, str], ...] = (
    ("Jürgen Müller", "juergen.mueller@example.de"),
    ("Zoë Faure", "zoe.faure@example.fr"),
    ("田中 太郎", "tanaka@example.jp"),
    ("João Gonçalves", "joao@example.pt"),
)
_ZONES = (
    timezone(timedelta(hours=1)),
    timezone(timedelta(hours=-5)),
    timezone(timedelta(hours=9)),
    UTC,
    timezone(timedelta(hours=5, minutes=30)),
)
_MAILERS = (
    "Mozilla Thunderbird 115.8.0",
    "Apple Mail (2.3774.400.31)",
    "Microsoft Outlook 16.0",
    "Roundcube Webmail/1.6.6",
    "K-9 Mail for Android",
)


@dataclass(slots=True)
class _Entry:
    data: bytes
    flags: tuple[str, ...]
    internaldate: datetime
    message_id: str
    subject: str
    kind: str


@dataclass(slots=True)
class _Builder:
    """Builds the corpus folder by folder; every random choice comes from ``rng``."""

    rng: random.Random
    clock: datetime
    folders: dict[str, list[_Entry]] = field(default_factory=dict)
    counter: int = 0

    # -- small helpers ---------------------------------------------------------------

    def tick(self, low_minutes: int = 20, high_minutes: int = 26 * 60) -> datetime:
        self.clock += timedelta(minutes=self.rng.randint(low_minutes, high_minutes))
        self.clock += timedelta(seconds=self.rng.randint(0, 59))
        return self.clock

    def msgid(self, domain: str) -> str:
        return f"<{self.rng.getrandbits(64):016x}.{self.rng.getrandbits(32):08x}@{domain}>"

    def boundary(self) -> str:
        style = self.rng.randrange(3)
        if style == 0:
            return f"0000000000{self.rng.getrandbits(48):012x}"
        if style == 1:
            n, m = self.rng.getrandbits(20), self.rng.getrandbits(24)
            return f"----=_Part_{n}_{m}.{1700000000000 + self.rng.getrandbits(30)}"
        return f"Apple-Mail={self.rng.getrandbits(64):016X}"

    def sentence(self) -> str:
        words = [self.rng.choice(_WORDS) for _ in range(self.rng.randint(6, 16))]
        return " ".join(words).capitalize() + self.rng.choice(".....?!")

    def paragraphs(self, count: int) -> list[str]:
        return [
            " ".join(self.sentence() for _ in range(self.rng.randint(2, 5))) for _ in range(count)
        ]

    def body_text(self, greeting: str, signature: str, paragraphs: int = 3) -> str:
        paras = self.paragraphs(paragraphs)
        return f"{greeting}\n\n" + "\n\n".join(_wrap(p) for p in paras) + f"\n\n{signature}\n"

    def person(self) -> tuple[str, str]:
        return self.rng.choice(_PEOPLE)

    def subject(self) -> str:
        topics = (
            "Release planning",
            "Quarterly budget",
            "Server maintenance window",
            "Contract draft v3",
            "Workshop travel",
            "Migration plan",
            "Performance numbers",
            "Team offsite",
            "Invoice 2024-0117",
            "Backup verification",
        )
        return self.rng.choice(topics) + self.rng.choice(("", "", " (update)", " - follow-up"))

    def bytes_(self, size: int, magic: bytes = b"", trailer: bytes = b"") -> bytes:
        return magic + self.rng.randbytes(size - len(magic) - len(trailer)) + trailer

    # -- top-level messages ------------------------------------------------------------

    def compose(
        self,
        body: Message,
        *,
        sender: tuple[str, str],
        to: Sequence[tuple[str, str] | str],
        subject: str,
        date: datetime,
        cc: Sequence[tuple[str, str] | str] = (),
        in_reply_to: str | None = None,
        references: Sequence[str] = (),
        extra: Sequence[tuple[str, str]] = (),
        received: bool = True,
    ) -> tuple[Message, str]:
        """A top-level message with realistic headers around ``body``."""
        address = sender[1]
        domain = address.rsplit("@", 1)[-1]
        mid = self.msgid(domain)
        local = date.astimezone(self.rng.choice(_ZONES))
        # The body part becomes the message: move its Content-* headers behind the
        # envelope headers (copying the payload would decode 8bit text).
        msg = body
        content_headers = msg.items()
        for name in {name for name, _ in content_headers}:
            del msg[name]
        if received:
            hop = local + timedelta(seconds=self.rng.randint(1, 20))
            msg["Return-Path"] = f"<{address}>"
            msg["Received"] = (
                f"from mail.{domain} (mail.{domain} [192.0.2.{self.rng.randint(2, 250)}])\n"
                f"\tby mx.example.org (Postfix) with ESMTPS id 4T{self.rng.getrandbits(40):010X}\n"
                f"\tfor <{_OWNER[1]}>; {format_datetime(hop)}"
            )
        msg["From"] = _ascii(_addr(sender))
        if to:
            msg["To"] = _fold_list([_addr(a) for a in to], len("To: "))
        if cc:
            msg["Cc"] = _fold_list([_addr(a) for a in cc], len("Cc: "))
        msg["Subject"] = _ascii(subject)
        msg["Date"] = format_datetime(local)
        msg["Message-ID"] = mid
        if in_reply_to is not None:
            msg["In-Reply-To"] = in_reply_to
        if references:
            msg["References"] = _fold_list(references, len("References: "), sep="")
        for name, value in extra:
            msg[name] = _ascii(value)
        msg["User-Agent"] = self.rng.choice(_MAILERS)
        msg["MIME-Version"] = "1.0"
        for name, value in content_headers:
            msg[name] = value
        if msg.is_multipart():
            msg.preamble = "This is a multi-part message in MIME format."
        return msg, mid

    def add(
        self,
        folder: str,
        msg: Message,
        mid: str,
        *,
        flags: Sequence[str] = ("\\Seen",),
        kind: str,
        delivered: datetime,
    ) -> None:
        subject = str(msg["Subject"] or "")
        self.folders.setdefault(folder, []).append(
            _Entry(
                data=_serialize(msg),
                flags=tuple(flags),
                internaldate=delivered.astimezone(UTC).replace(microsecond=0),
                message_id=mid,
                subject=subject,
                kind=kind,
            )
        )

    def deliver(
        self,
        folder: str,
        body: Message,
        *,
        kind: str,
        sender: tuple[str, str],
        to: Sequence[tuple[str, str] | str],
        subject: str,
        flags: Sequence[str] = ("\\Seen",),
        cc: Sequence[tuple[str, str] | str] = (),
        in_reply_to: str | None = None,
        references: Sequence[str] = (),
        extra: Sequence[tuple[str, str]] = (),
        received: bool = True,
    ) -> str:
        """Compose and file a message dated now on the builder's clock; return its id."""
        date = self.tick()
        msg, mid = self.compose(
            body,
            sender=sender,
            to=to,
            subject=subject,
            date=date,
            cc=cc,
            in_reply_to=in_reply_to,
            references=references,
            extra=extra,
            received=received,
        )
        self.add(folder, msg, mid, flags=flags, kind=kind, delivered=date + timedelta(seconds=7))
        return mid

    def plain(self, greeting: str = "Hi Pat,", paragraphs: int = 3) -> Message:
        name = self.rng.choice(("Alice", "Bob", "Carol", "Dmitri", "Erin"))
        return _text_part(self.body_text(greeting, f"-- \n{name}", paragraphs))

    def alternative(self, paragraphs: int = 3, cte: str = "quoted-printable") -> Message:
        paras = self.paragraphs(paragraphs)
        text = "Hello,\n\n" + "\n\n".join(_wrap(p) for p in paras) + "\n\nRegards\n"
        html = (
            '<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head>\n<body>\n'
            + "<p>Hello,</p>\n"
            + "\n".join(f"<p>{escape(p)}</p>" for p in paras)
            + "\n<p>Regards</p>\n</body></html>\n"
        )
        return _multipart(
            "alternative",
            [
                _text_part(text, charset="utf-8", cte=cte, params="; format=flowed"),
                _text_part(html, subtype="html", charset="utf-8", cte=cte),
            ],
            self.boundary(),
        )

    def with_attachments(self, text: Message, attachments: Sequence[Message]) -> Message:
        return _multipart("mixed", [text, *attachments], self.boundary())


def _addr(who: tuple[str, str] | str) -> str:
    if isinstance(who, str):
        return who
    name, address = who
    try:
        name.encode("ascii")
    except UnicodeEncodeError:
        return f"{_encoded_words(name, 'Q')} <{address}>"
    if any(c in name for c in "'.,\""):
        return f'"{name}" <{address}>'
    return f"{name} <{address}>"


def _wrap(paragraph: str, width: int = 72) -> str:
    lines: list[str] = []
    line = ""
    for word in paragraph.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# The corpus itself, folder by folder


def _build_inbox(b: _Builder) -> None:
    inbox = "INBOX"
    me = _OWNER
    b.clock = datetime(2024, 3, 4, 8, 12, tzinfo=UTC)

    def unseen_later(i: int) -> tuple[str, ...]:
        return () if i >= 44 else ("\\Seen",)

    # 1-8: everyday plain text, a few with several recipients and Cc.
    for i in range(8):
        sender = b.person()
        cc = [b.person() for _ in range(i % 3)]
        b.deliver(
            inbox, b.plain(), kind="plain", sender=sender, to=[me], cc=cc, subject=b.subject()
        )

    # A thread of four messages (In-Reply-To / References); Pat answered the first.
    alice, bob, grace = _PEOPLE[0], _PEOPLE[1], _PEOPLE[6]
    refs: list[str] = []
    thread_subject = "Release planning for 2.4"
    first = b.deliver(
        inbox,
        b.plain("Hi all,"),
        kind="thread",
        flags=("\\Answered", "\\Seen"),
        sender=alice,
        to=[me, bob],
        cc=[grace],
        subject=thread_subject,
    )
    refs.append(first)
    for sender in (bob, grace, alice):
        mid = b.deliver(
            inbox,
            b.plain("Hi,"),
            kind="thread",
            sender=sender,
            to=[me, alice if sender != alice else bob],
            cc=[grace] if sender != grace else [],
            subject="Re: " + thread_subject,
            in_reply_to=refs[-1],
            references=list(refs),
        )
        refs.append(mid)

    # UTF-8 8bit bodies with RFC 2047 headers (Q for names, B for subjects).
    jurgen, zoe, tanaka, joao = _UNICODE_PEOPLE
    b.deliver(
        inbox,
        _text_part(_GERMAN, charset="utf-8", cte="8bit"),
        kind="utf8-8bit",
        sender=jurgen,
        to=[me],
        subject=_encoded_words("Übersicht für nächste Woche \N{EN DASH} Größe der Postfächer", "B"),
    )
    b.deliver(
        inbox,
        _text_part(_FRENCH, charset="utf-8", cte="8bit"),
        kind="utf8-8bit",
        flags=("\\Flagged", "\\Seen"),
        sender=zoe,
        to=[me],
        cc=[jurgen],
        subject=_encoded_words("Compte rendu de la réunion", "Q"),
    )
    b.deliver(
        inbox,
        _text_part(_JAPANESE, charset="utf-8", cte="8bit"),
        kind="utf8-8bit",
        sender=tanaka,
        to=[me],
        subject=_encoded_words("来週の打ち合わせ資料", "B"),
    )
    # Legacy 8bit ISO-8859-1: the wire is not always UTF-8.
    b.deliver(
        inbox,
        _text_part(_LATIN1, charset="iso-8859-1", cte="8bit"),
        kind="latin1-8bit",
        sender=joao,
        to=[me],
        subject=_encoded_words("Orçamento revisto", "Q", "ISO-8859-1"),
    )
    # Quoted-printable UTF-8 with long lines (soft breaks).
    for _ in range(3):
        text = (
            "Grüße,\n\n"
            + " ".join(b.paragraphs(3))
            + "\n\nDiese Zeile ist absichtlich sehr lang, damit quoted-printable weiche "
            "Zeilenumbrüche einfügen muss \N{EN DASH} mit Umlauten: äöüß ÄÖÜ und Euro €.\n"
        )
        b.deliver(
            inbox,
            _text_part(text, charset="utf-8", cte="quoted-printable"),
            kind="utf8-qp",
            sender=b.rng.choice(_UNICODE_PEOPLE),
            to=[me],
            subject=_encoded_words("Grüße und Neuigkeiten", "Q"),
        )

    # multipart/alternative newsletters and notifications.
    for i in range(8):
        b.deliver(
            inbox,
            b.alternative(paragraphs=3 + i % 4),
            kind="alternative",
            flags=unseen_later(30 + i),
            sender=("Example Newsletter", "news@news.example.com"),
            to=[me],
            subject=f"Weekly digest #{112 + i}",
            extra=[("List-Unsubscribe", "<https://news.example.com/unsubscribe?u=pat>")],
        )

    # Attachments, 2 KB up to 3 MiB.
    csv = "date,item,amount\n" + "".join(
        f"2024-03-{d:02d},item-{b.rng.randint(100, 999)},{b.rng.randint(1, 9999) / 100:.2f}\n"
        for d in range(1, 29)
        for _ in range(2)
    )
    b.deliver(
        inbox,
        b.with_attachments(
            b.plain(paragraphs=1),
            [
                _binary_part(csv.encode()[:2048].ljust(2048, b"\n"), "text/csv", "expenses.csv"),
            ],
        ),
        kind="attachment",
        sender=_PEOPLE[5],
        to=[me],
        subject="Expenses March (2 KB csv)",
    )
    b.deliver(
        inbox,
        b.with_attachments(
            b.plain(paragraphs=2),
            [
                _binary_part(
                    b.bytes_(48 * 1024, b"%PDF-1.7\n", b"\n%%EOF\n"),
                    "application/pdf",
                    "minutes.pdf",
                ),
                _binary_part(b.bytes_(12 * 1024, b"\x89PNG\r\n\x1a\n"), "image/png", "chart.png"),
            ],
        ),
        kind="attachment",
        sender=_PEOPLE[2],
        to=[me],
        cc=[_PEOPLE[3], _PEOPLE[4]],
        subject="Minutes and chart",
    )
    b.deliver(
        inbox,
        b.with_attachments(
            b.plain(paragraphs=1),
            [
                _binary_part(
                    b.bytes_(200 * 1024, b"%PDF-1.5\n", b"\n%%EOF\n"),
                    "application/pdf",
                    "Übersicht Q1 \N{EN DASH} Größen.pdf",
                )
            ],
        ),
        kind="attachment",
        flags=("\\Flagged", "\\Seen"),
        sender=jurgen,
        to=[me],
        subject=_encoded_words("Übersicht Q1 (PDF)", "B"),
    )
    b.deliver(
        inbox,
        b.with_attachments(
            b.plain(paragraphs=2),
            [
                _binary_part(
                    b.bytes_(768 * 1024, b"PK\x03\x04"), "application/zip", "logs-2024-03.zip"
                )
            ],
        ),
        kind="attachment-1mb",
        sender=_PEOPLE[3],
        to=[me],
        subject="Server logs (about 1 MB)",
    )
    b.deliver(
        inbox,
        b.with_attachments(
            b.plain(paragraphs=2),
            [
                _binary_part(
                    b.bytes_(3 * 1024 * 1024, b"\x00\x00\x00\x20ftypisom"),
                    "video/mp4",
                    "demo-recording.mp4",
                )
            ],
        ),
        kind="attachment-3mb",
        flags=("\\Seen", "Important"),
        sender=_PEOPLE[7],
        to=[me],
        subject="Screen recording of the demo (3 MB)",
    )

    # multipart/mixed( multipart/related( multipart/alternative, inline image ), pdf )
    cid = f"logo.{b.rng.getrandbits(32):08x}@example.com"
    alt = b.alternative(paragraphs=2)
    related = _multipart(
        "related",
        [
            alt,
            _binary_part(
                b.bytes_(6 * 1024, b"\x89PNG\r\n\x1a\n"),
                "image/png",
                "logo.png",
                disposition="inline",
                content_id=cid,
            ),
        ],
        b.boundary(),
        params='; type="multipart/alternative"',
    )
    b.deliver(
        inbox,
        _multipart(
            "mixed",
            [
                related,
                _binary_part(
                    b.bytes_(30 * 1024, b"%PDF-1.4\n", b"\n%%EOF\n"),
                    "application/pdf",
                    "invoice-2024-0117.pdf",
                ),
            ],
            b.boundary(),
        ),
        kind="related",
        sender=("Billing", "billing@shop.example.com"),
        to=[me],
        subject="Your invoice 2024-0117",
    )

    # A forwarded message (message/rfc822) that has its own attachment.
    inner_body = b.with_attachments(
        b.plain("Dear Bob,", 2),
        [
            _binary_part(
                b.bytes_(20 * 1024, b"%PDF-1.6\n", b"\n%%EOF\n"), "application/pdf", "offer.pdf"
            )
        ],
    )
    inner, _ = b.compose(
        inner_body,
        sender=("Vendor Sales", "sales@vendor.example.net"),
        to=[bob],
        subject="Offer for the support contract",
        date=b.clock - timedelta(days=3),
        received=False,
    )
    b.deliver(
        inbox,
        b.with_attachments(
            _text_part("Pat, see the vendor's offer below. Can you review it?\n\nBob\n"),
            [_rfc822_part(inner)],
        ),
        kind="forward",
        flags=("\\Seen", "$Forwarded"),
        sender=bob,
        to=[me],
        subject="Fwd: Offer for the support contract",
    )

    # Many recipients, a long References list and a long DKIM signature: folded headers.
    crowd = [(f"Member {i:02d}", f"member{i:02d}@team.example.com") for i in range(30)]
    long_refs = [b.msgid("lists.example.com") for _ in range(40)]
    dkim = base64.b64encode(b.rng.randbytes(256)).decode("ascii")
    dkim_value = (
        "v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com; s=sel2024;\n"
        f"\tt={int(b.clock.timestamp())}; bh={base64.b64encode(b.rng.randbytes(32)).decode()};\n"
        "\th=From:To:Cc:Subject:Date:Message-ID:References:In-Reply-To;\n\tb="
        + "\n\t ".join(dkim[i : i + 70] for i in range(0, len(dkim), 70))
    )
    b.deliver(
        inbox,
        b.plain("Hi everyone,", 2),
        kind="long-headers",
        sender=alice,
        to=crowd,
        cc=[me, grace, bob],
        subject="All-hands agenda",
        in_reply_to=long_refs[-1],
        references=long_refs,
        extra=[
            ("DKIM-Signature", dkim_value),
            # One unfolded line of about 900 octets: legal (< 998) but long.
            (
                "X-Campaign-Data",
                "v1;" + ";".join(f"k{i}={b.rng.getrandbits(40):010x}" for i in range(60)),
            ),
        ],
    )

    # Calendar invitation (text/plain + text/calendar).
    start = b.clock + timedelta(days=5)
    ics = (
        "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//imapproxy//corpus//EN\nMETHOD:REQUEST\n"
        "BEGIN:VEVENT\n"
        f"UID:{b.rng.getrandbits(64):016x}@example.com\n"
        f"DTSTART:{start:%Y%m%dT%H%M%SZ}\nDTEND:{start + timedelta(hours=1):%Y%m%dT%H%M%SZ}\n"
        "SUMMARY:Architecture review\nORGANIZER:mailto:grace.lee@example.com\n"
        f"ATTENDEE;RSVP=TRUE:mailto:{me[1]}\nEND:VEVENT\nEND:VCALENDAR\n"
    )
    b.deliver(
        inbox,
        _multipart(
            "alternative",
            [
                _text_part("You are invited to: Architecture review\n"),
                _text_part(ics, subtype="calendar", charset="utf-8", params="; method=REQUEST"),
            ],
            b.boundary(),
        ),
        kind="calendar",
        sender=grace,
        to=[me],
        subject="Invitation: Architecture review",
    )

    # Edge cases: empty body, no Subject text, deleted-but-not-expunged.
    empty = Message()
    empty["Content-Type"] = 'text/plain; charset="us-ascii"'
    empty.set_payload("")
    b.deliver(inbox, empty, kind="empty-body", sender=_PEOPLE[8], to=[me], subject="")
    b.deliver(
        inbox,
        b.plain(paragraphs=1),
        kind="deleted",
        flags=("\\Deleted", "\\Seen"),
        sender=_PEOPLE[9],
        to=[me],
        subject="Old reminder (deleted, not expunged)",
    )

    # Fill up to 50 with ordinary mail; the newest ones are unseen.
    while len(b.folders[inbox]) < 50:
        i = len(b.folders[inbox])
        kind = "plain" if i % 3 else "alternative"
        body = (
            b.plain()
            if kind == "plain"
            else b.alternative(cte="8bit" if i % 2 else "quoted-printable")
        )
        flags = list(unseen_later(i))
        if i % 7 == 0:
            flags.insert(0, "\\Flagged")
        b.deliver(
            inbox, body, kind=kind, flags=flags, sender=b.person(), to=[me], subject=b.subject()
        )


def _build_other_folders(b: _Builder) -> None:
    me = _OWNER
    # Sent: Pat's own mail, all seen, one with a 1.5 MiB attachment.
    b.clock = datetime(2024, 3, 5, 10, 0, tzinfo=UTC)
    for i in range(10):
        to = [b.person() for _ in range(1 + i % 3)]
        body: Message = b.plain("Hello,", 2)
        kind = "plain"
        if i == 4:
            body = b.with_attachments(
                b.plain("Hello,", 1),
                [
                    _binary_part(
                        b.bytes_(2048 * 1024, b"%PDF-1.7\n", b"\n%%EOF\n"),
                        "application/pdf",
                        "proposal-final.pdf",
                    )
                ],
            )
            kind = "attachment"
        elif i % 4 == 1:
            body = b.alternative(2)
            kind = "alternative"
        b.deliver(
            "Sent", body, kind=kind, sender=me, to=to, subject="Re: " + b.subject(), received=False
        )

    # Drafts: unfinished mail, one without recipients.
    b.clock = datetime(2024, 4, 2, 16, 0, tzinfo=UTC)
    b.deliver(
        "Drafts",
        b.plain("Hi,", 1),
        kind="draft",
        flags=("\\Draft", "\\Seen"),
        sender=me,
        to=[],
        subject="(draft) notes",
        received=False,
    )
    for _ in range(2):
        b.deliver(
            "Drafts",
            b.plain("Hi,", 2),
            kind="draft",
            flags=("\\Draft", "\\Seen"),
            sender=me,
            to=[b.person()],
            subject=b.subject(),
            received=False,
        )

    # Trash: deleted mail, one flagged \Deleted already.
    b.clock = datetime(2024, 2, 10, 9, 0, tzinfo=UTC)
    for i in range(5):
        flags = ("\\Deleted", "\\Seen") if i == 4 else ("\\Seen",)
        body = (
            b.plain()
            if i != 2
            else b.with_attachments(
                b.plain(paragraphs=1),
                [
                    _binary_part(
                        b.bytes_(150 * 1024, b"\xff\xd8\xff\xe0"), "image/jpeg", "photo.jpg"
                    )
                ],
            )
        )
        b.deliver(
            "Trash",
            body,
            kind="plain" if i != 2 else "attachment",
            flags=flags,
            sender=b.person(),
            to=[me],
            subject=b.subject(),
        )

    # Junk: spam with $Junk, HTML only, encoded subjects, unseen.
    b.clock = datetime(2024, 3, 20, 2, 0, tzinfo=UTC)
    spam_subjects = (
        "You have won!!!",
        "Dringend: Konto überprüfen",
        "Ваш заказ готов",
        "Cheap meds 💊",
        "Invoice overdue",
        "Réclamez votre prix",
    )
    for i, subj in enumerate(spam_subjects):
        html = f'<html><body><h1>{escape(subj)}</h1><p>{escape(b.sentence())}</p><a href="http://spam.example/{i}">Click</a></body></html>\n'
        body = _text_part(
            html, subtype="html", charset="utf-8", cte="base64" if i % 2 else "quoted-printable"
        )
        b.deliver(
            "Junk",
            body,
            kind="spam",
            flags=("$Junk",),
            sender=(f"Promo {i}", f"promo{i}@spam.example"),
            to=[me],
            subject=_encoded_words(subj, "B" if i % 2 else "Q"),
            extra=[("X-Spam-Flag", "YES"), ("X-Spam-Score", f"{8 + i}.{i}")],
        )

    # Archive: 2023 mail; Archive/2024: early 2024 with a 1.2 MiB attachment.
    b.clock = datetime(2023, 5, 1, 9, 0, tzinfo=UTC)
    for i in range(8):
        body = b.plain() if i % 2 else b.alternative(2)
        b.deliver(
            "Archive",
            body,
            kind="plain" if i % 2 else "alternative",
            flags=("\\Seen",) if i != 3 else ("\\Answered", "\\Seen"),
            sender=b.person(),
            to=[me],
            subject=b.subject(),
        )
    b.clock = datetime(2024, 1, 3, 9, 0, tzinfo=UTC)
    for i in range(10):
        body = b.plain()
        kind = "plain"
        if i == 6:
            body = b.with_attachments(
                b.plain(paragraphs=1),
                [
                    _binary_part(
                        b.bytes_(1228 * 1024, b"PK\x03\x04"), "application/zip", "archive-2023.zip"
                    )
                ],
            )
            kind = "attachment"
        b.deliver(
            "Archive/2024",
            body,
            kind=kind,
            flags=("\\Seen", "$NotJunk") if i == 0 else ("\\Seen",),
            sender=b.person(),
            to=[me],
            subject=b.subject(),
        )

    # Shared/Projects: mailing-list traffic with List-Id, tags and priorities (rule tests).
    b.clock = datetime(2024, 3, 11, 7, 30, tzinfo=UTC)
    for i in range(6):
        project = ("alpha", "beta", "gamma")[i % 3]
        extra = [
            ("List-Id", f"Project {project.title()} <{project}.lists.example.com>"),
            ("List-Post", f"<mailto:{project}@lists.example.com>"),
            ("Precedence", "list"),
        ]
        if i == 2:
            extra.append(("X-Priority", "1 (Highest)"))
        b.deliver(
            "Shared/Projects",
            b.plain("Hi list,", 2),
            kind="list",
            flags=() if i >= 4 else ("\\Seen",),
            sender=b.person(),
            to=[f"{project}@lists.example.com"],
            subject=f"[{project}] " + b.subject(),
            extra=extra,
        )

    # Shared/Projects/日本語: ISO-2022-JP, the classic Japanese mail encoding.
    b.clock = datetime(2024, 3, 14, 1, 0, tzinfo=UTC)
    for subj in ("会議の議事録", "資料の送付について"):
        b.deliver(
            "Shared/Projects/日本語",
            _text_part(_JAPANESE, charset="iso-2022-jp", cte="7bit"),
            kind="iso-2022-jp",
            sender=_UNICODE_PEOPLE[2],
            to=[me],
            subject=_encoded_words(subj, "B", "ISO-2022-JP"),
        )

    # Entwürfe: German drafts.
    b.clock = datetime(2024, 4, 5, 12, 0, tzinfo=UTC)
    for subj in ("Angebot für Müller & Söhne", "Einladung zum Sommerfest", "Kündigung Büroräume"):
        b.deliver(
            "Entwürfe",
            _text_part(_GERMAN, charset="utf-8", cte="quoted-printable"),
            kind="draft",
            flags=("\\Draft",),
            sender=me,
            to=[_UNICODE_PEOPLE[0]],
            subject=_encoded_words(subj, "Q"),
            received=False,
        )


# ---------------------------------------------------------------------------------------
# Writing and copying


def _flag_suffix(flags: Iterable[str]) -> str:
    letters = []
    for flag in flags:
        if flag in _FLAG_LETTERS:
            letters.append(_FLAG_LETTERS[flag])
        else:
            letters.append(chr(ord("a") + KEYWORDS.index(flag)))
    return "".join(sorted(letters))


def _guid(name: str) -> str:
    return hashlib.sha256(f"imapproxy-corpus:{name}".encode()).hexdigest()[:32]


def _subscriptions(names: Iterable[str]) -> bytes:
    # Dovecot 2.3 format: "V\t2\n\n", then one name per line, mUTF-7 levels joined by TAB.
    lines = ["\t".join(encode_mailbox_name(p) for p in n.split("/")) for n in names if n != "INBOX"]
    return ("V\t2\n\n" + "".join(line + "\n" for line in lines)).encode("ascii")


def write_corpus(root: str | os.PathLike[str], *, seed: int = CORPUS_SEED) -> CorpusSummary:
    """Write the corpus as a Maildir++ tree at ``root`` and describe it.

    ``root`` becomes the Maildir root (what ``mail_location = maildir:~/Maildir``
    points at); it must not exist yet or be empty. Same ``seed``, same bytes: file
    contents, names and mtimes are identical on every run and machine.
    """
    root_path = Path(root)
    root_path.mkdir(parents=True, exist_ok=True)
    if any(root_path.iterdir()):
        raise FileExistsError(errno.EEXIST, "corpus target is not empty", str(root_path))

    builder = _Builder(
        rng=random.Random(seed),  # noqa: S311 - reproducible test data, not secrets
        clock=datetime(2024, 1, 1, tzinfo=UTC),
    )
    _build_inbox(builder)
    _build_other_folders(builder)

    keywords = "".join(f"{i} {k}\n" for i, k in enumerate(KEYWORDS)).encode("ascii")
    folders: list[CorpusFolder] = []
    for index, spec in enumerate(FOLDERS):
        disk = _disk_name(spec.name)
        fdir = root_path / disk if disk else root_path
        for sub in ("cur", "new", "tmp"):
            (fdir / sub).mkdir(parents=True, exist_ok=True)
        if disk:
            (fdir / "maildirfolder").write_bytes(b"")
        (fdir / "dovecot-keywords").write_bytes(keywords)
        entries = sorted(builder.folders.get(spec.name, []), key=lambda e: e.internaldate)
        uidvalidity = _UIDVALIDITY_BASE + index
        uidlist = [f"3 V{uidvalidity} N{len(entries) + 1} G{_guid(spec.name)}\n"]
        messages: list[CorpusMessage] = []
        for uid, entry in enumerate(entries, start=1):
            builder.counter += 1
            stamp = int(entry.internaldate.timestamp())
            vsize = len(entry.data) + entry.data.count(b"\n")
            base = f"{stamp}.M{builder.counter}P1.{_HOSTNAME},S={len(entry.data)},W={vsize}"
            filename = f"{base}:2,{_flag_suffix(entry.flags)}"
            path = fdir / "cur" / filename
            path.write_bytes(entry.data)
            os.utime(path, (stamp, stamp))
            uidlist.append(f"{uid} :{base}\n")
            messages.append(
                CorpusMessage(
                    folder=spec.name,
                    uid=uid,
                    path=str(path.relative_to(root_path)),
                    size=len(entry.data),
                    rfc822_size=vsize,
                    flags=entry.flags,
                    internaldate=entry.internaldate,
                    message_id=entry.message_id,
                    subject=entry.subject,
                    kind=entry.kind,
                )
            )
        (fdir / "dovecot-uidlist").write_bytes("".join(uidlist).encode("ascii"))
        folders.append(
            CorpusFolder(
                name=spec.name,
                wire_name=encode_mailbox_name(spec.name),
                disk_name=disk,
                special_use=spec.special_use,
                uidvalidity=uidvalidity,
                messages=tuple(messages),
            )
        )
    (root_path / "subscriptions").write_bytes(_subscriptions(f.name for f in FOLDERS))
    for dirpath, _dirnames, filenames in os.walk(root_path):
        if os.path.basename(dirpath) in ("cur", "new"):
            continue  # message files carry their INTERNALDATE as mtime
        for name in filenames:
            os.utime(os.path.join(dirpath, name), (_METADATA_MTIME, _METADATA_MTIME))
    return CorpusSummary(root=root_path, folders=tuple(folders))


def install_corpus(
    template: str | os.PathLike[str],
    maildir: str | os.PathLike[str],
    *,
    owner: tuple[int, int] | None = None,
) -> None:
    """Give ``maildir`` its own copy of the corpus written at ``template``.

    Message files (under ``cur/`` and ``new/``) are hard-linked when possible and
    copied otherwise (another file system, no permission); every other file is copied,
    because Dovecot appends to ``dovecot-uidlist`` in place. Directories and files are
    chowned to ``owner`` (uid, gid) when given. ``maildir`` must not exist yet.
    """
    src_root = Path(template)
    dst_root = Path(maildir)
    dst_root.mkdir(parents=True, exist_ok=False)
    link_ok = True
    for dirpath, dirnames, filenames in os.walk(src_root):
        src_dir = Path(dirpath)
        dst_dir = dst_root / src_dir.relative_to(src_root)
        for d in dirnames:
            (dst_dir / d).mkdir(mode=0o700)
        is_mail_dir = src_dir.name in ("cur", "new")
        for name in filenames:
            src, dst = src_dir / name, dst_dir / name
            if is_mail_dir and link_ok:
                try:
                    os.link(src, dst)
                except OSError:
                    link_ok = False
                else:
                    continue
            shutil.copy2(src, dst)
    if owner is not None:
        uid, gid = owner
        for dirpath, _dirnames, filenames in os.walk(dst_root):
            os.chown(dirpath, uid, gid)
            for name in filenames:
                os.chown(os.path.join(dirpath, name), uid, gid)
