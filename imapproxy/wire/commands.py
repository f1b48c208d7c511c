"""Client commands: a cheap head, typed arguments on demand.

:meth:`Command.parse` reads only the tag and the command name (``UID FETCH``
counts as one name), which is all the relay needs for most commands. The
arguments are parsed the first time :attr:`Command.args` is read, into one of the
argument classes below, following RFC 9051 section 6 and RFC 3501, with the
extensions real clients use: LITERAL+/LITERAL- (framing), IDLE, ID (RFC 2971),
ENABLE (RFC 5161), UIDPLUS (RFC 4315), MOVE (RFC 6851), CONDSTORE/QRESYNC
(RFC 7162), BINARY (RFC 3516), SASL-IR (RFC 4959), NAMESPACE, SPECIAL-USE
(RFC 6154), LIST-EXTENDED and LIST-STATUS (RFC 5258, 5819), ESEARCH and SEARCHRES
(RFC 4731, 5182), MULTIAPPEND (RFC 3502), CATENATE (RFC 4469), UTF8=ACCEPT
(RFC 6855), COMPRESS (RFC 4978) and UNSELECT (RFC 3691). Any other command is kept
intact and parsed generically (:class:`GenericArgs`).

A frame that is only the start of a command (a :class:`ContinuationRequest`
preview or a streamed :class:`FramePart` skeleton) parses as far as it goes: its
head always, its arguments when they are complete.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal as TypingLiteral

from imapproxy.wire.errors import Reply
from imapproxy.wire.framing import Frame
from imapproxy.wire.grammar import TAG_CHAR
from imapproxy.wire.reader import Atom, Literal, ParseError, Reader, Value
from imapproxy.wire.search import SearchKey, read_search_program
from imapproxy.wire.values import FetchItem, Mailbox, Secret, SequenceSet

__all__ = [
    "AclArgs",
    "AppendArgs",
    "AppendMessage",
    "AuthenticateArgs",
    "CatenatePart",
    "Command",
    "CommandArgs",
    "CopyArgs",
    "CreateArgs",
    "EnableArgs",
    "FetchArgs",
    "GenericArgs",
    "IdArgs",
    "ListArgs",
    "LoginArgs",
    "MailboxArgs",
    "MetadataArgs",
    "NoArgs",
    "RenameArgs",
    "SearchArgs",
    "SelectArgs",
    "StatusArgs",
    "StoreArgs",
    "UidExpungeArgs",
]

_HEAD = re.compile(rb"(" + TAG_CHAR + rb"+) +([A-Za-z0-9][A-Za-z0-9._-]*)")
_SECRET_COMMANDS = frozenset(("LOGIN", "AUTHENTICATE"))
_UID_SUB = re.compile(rb" +([A-Za-z]+)")
_BASE64 = re.compile(rb"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_UID_COMMANDS = frozenset(
    ("COPY", "MOVE", "FETCH", "SEARCH", "STORE", "EXPUNGE", "SORT", "THREAD", "REPLACE")
)


# -- argument classes -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NoArgs:
    """CAPABILITY, NOOP, LOGOUT, STARTTLS, CHECK, CLOSE, UNSELECT, EXPUNGE,
    NAMESPACE, IDLE, UNAUTHENTICATE."""


@dataclass(frozen=True, slots=True)
class LoginArgs:
    userid: bytes
    password: Secret


@dataclass(frozen=True, slots=True)
class AuthenticateArgs:
    """``AUTHENTICATE mechanism [initial-response]`` (SASL-IR: ``=`` is empty)."""

    mechanism: str
    initial_response: Secret | None = None


@dataclass(frozen=True, slots=True)
class EnableArgs:
    """``ENABLE cap ...``: names as sent (they are case-insensitive)."""

    capabilities: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class IdArgs:
    """``ID ( "key" "value" ... )`` or ``ID NIL``; ``params`` is None for NIL."""

    params: tuple[tuple[bytes, bytes | None], ...] | None


@dataclass(frozen=True, slots=True)
class CompressArgs:
    mechanism: str


@dataclass(frozen=True, slots=True)
class QresyncParams:
    """The QRESYNC parameter of SELECT/EXAMINE (RFC 7162 section 3.2.5)."""

    uidvalidity: int
    modseq: int
    known_uids: SequenceSet | None = None
    seq_match: tuple[SequenceSet, SequenceSet] | None = None


@dataclass(frozen=True, slots=True)
class SelectArgs:
    """SELECT / EXAMINE with optional parameters (CONDSTORE, QRESYNC, others)."""

    mailbox: Mailbox
    condstore: bool = False
    qresync: QresyncParams | None = None
    other: tuple[tuple[str, Value], ...] = ()


@dataclass(frozen=True, slots=True)
class MailboxArgs:
    """DELETE, SUBSCRIBE, UNSUBSCRIBE."""

    mailbox: Mailbox


@dataclass(frozen=True, slots=True)
class CreateArgs:
    """CREATE with optional ``(USE (\\Sent ...))`` (RFC 6154) and other parameters."""

    mailbox: Mailbox
    special_use: tuple[bytes, ...] = ()
    other: tuple[tuple[str, Value], ...] = ()


@dataclass(frozen=True, slots=True)
class RenameArgs:
    old: Mailbox
    new: Mailbox


@dataclass(frozen=True, slots=True)
class ListArgs:
    """LIST (with LIST-EXTENDED selection and return options) and LSUB.

    ``patterns`` are LIST patterns, as sent (``%`` and ``*`` are wildcards).
    ``return_options`` holds ``(name, args)``; STATUS's args are the item names.
    """

    reference: Mailbox
    patterns: tuple[bytes, ...]
    selection: tuple[str, ...] = ()
    return_options: tuple[tuple[str, tuple[Value, ...]], ...] = ()

    @property
    def status_items(self) -> tuple[str, ...]:
        """The STATUS items of LIST-STATUS (RFC 5819), or ``()``."""
        for name, args in self.return_options:
            if name == "STATUS":
                return tuple(a.upper() for a in _atoms(args))
        return ()


@dataclass(frozen=True, slots=True)
class StatusArgs:
    mailbox: Mailbox
    items: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CatenatePart:
    """A CATENATE part: ``TEXT`` with a literal, or ``URL`` with an IMAP URL."""

    kind: TypingLiteral["TEXT", "URL"]
    text: Literal | None = None
    url: bytes | None = None


@dataclass(frozen=True, slots=True)
class AppendMessage:
    """One message of an APPEND (several with MULTIAPPEND).

    ``data`` is the message literal (by reference: a large one was streamed and
    only its size is known); ``utf8`` marks ``UTF8 (~{n})`` (RFC 6855);
    ``catenate`` holds CATENATE parts instead of ``data``.
    """

    flags: tuple[bytes, ...] | None
    date: _dt.datetime | None
    data: Literal | None
    utf8: bool = False
    catenate: tuple[CatenatePart, ...] | None = None

    @property
    def size(self) -> int:
        """Octets of message data announced (CATENATE TEXT parts added up)."""
        if self.data is not None:
            return self.data.size
        return sum(p.text.size for p in self.catenate or () if p.text is not None)


@dataclass(frozen=True, slots=True)
class AppendArgs:
    mailbox: Mailbox
    messages: tuple[AppendMessage, ...]


@dataclass(frozen=True, slots=True)
class SearchArgs:
    """SEARCH / UID SEARCH. ``return_options`` is None without ESEARCH's RETURN."""

    key: SearchKey
    charset: bytes | None = None
    return_options: tuple[tuple[str, tuple[Value, ...]], ...] | None = None


@dataclass(frozen=True, slots=True)
class FetchArgs:
    """FETCH / UID FETCH.

    ``items`` is the requested list with the macros ALL, FAST and FULL expanded
    (``macro`` records which one was used); ``changedsince`` and ``vanished`` are
    the CONDSTORE/QRESYNC modifiers (RFC 7162).
    """

    sequence_set: SequenceSet
    items: tuple[FetchItem, ...]
    macro: str | None = None
    changedsince: int | None = None
    vanished: bool = False
    other_modifiers: tuple[tuple[str, Value], ...] = ()


@dataclass(frozen=True, slots=True)
class StoreArgs:
    """STORE / UID STORE: ``mode`` is ``+``, ``-`` or ``""`` (replace)."""

    sequence_set: SequenceSet
    mode: str
    item: str
    silent: bool
    flags: tuple[bytes, ...]
    unchangedsince: int | None = None


@dataclass(frozen=True, slots=True)
class CopyArgs:
    """COPY, MOVE, UID COPY, UID MOVE."""

    sequence_set: SequenceSet
    mailbox: Mailbox


@dataclass(frozen=True, slots=True)
class UidExpungeArgs:
    sequence_set: SequenceSet


@dataclass(frozen=True, slots=True)
class AclArgs:
    """ACL commands (RFC 4314: SETACL, DELETEACL, GETACL, LISTRIGHTS, MYRIGHTS) and
    GETQUOTAROOT (RFC 9208): a mailbox, then ``strings`` (identifier, rights) as
    astrings."""

    mailbox: Mailbox
    strings: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class MetadataArgs:
    """GETMETADATA and SETMETADATA (RFC 5464): GETMETADATA's ``options`` (the
    parenthesised list before the mailbox, or ``()``), the mailbox (``""`` for
    the server), then ``rest``: the entries, or SETMETADATA's entry-value list,
    as generic values."""

    mailbox: Mailbox
    options: tuple[Value, ...] = ()
    rest: tuple[Value, ...] = ()


@dataclass(frozen=True, slots=True)
class GenericArgs:
    """Arguments of a command the codec has no grammar for, parsed generically."""

    values: tuple[Value, ...]


CommandArgs = (
    NoArgs
    | LoginArgs
    | AuthenticateArgs
    | EnableArgs
    | IdArgs
    | CompressArgs
    | SelectArgs
    | MailboxArgs
    | CreateArgs
    | RenameArgs
    | ListArgs
    | StatusArgs
    | AppendArgs
    | SearchArgs
    | FetchArgs
    | StoreArgs
    | CopyArgs
    | UidExpungeArgs
    | AclArgs
    | MetadataArgs
    | GenericArgs
)


# -- the command view --------------------------------------------------------------


class Command:
    """A parsed view of one command frame.

    ``tag`` and ``name`` are read at construction; ``args`` on first access.
    ``name`` is upper-case; a UID command is named ``"UID FETCH"`` etc.
    """

    __slots__ = ("_args", "_args_pos", "frame", "name", "quirks", "tag")

    def __init__(
        self,
        frame: Frame,
        tag: bytes,
        name: str,
        args_pos: int,
        quirks: Counter[str] | None = None,
    ) -> None:
        self.frame = frame
        self.tag = tag
        self.name = name
        self.quirks = quirks
        self._args_pos = args_pos
        self._args: CommandArgs | None = None

    @classmethod
    def parse(cls, frame: Frame, quirks: Counter[str] | None = None) -> Command:
        """Read the head of a command frame.

        Args:
            frame: a frame read in the server role.
            quirks: counts the tolerances used by QUIRKS.md row (see
                :class:`~imapproxy.wire.reader.Reader`).

        Raises:
            ParseError: no valid tag and command name; the reply is an untagged
                ``BAD`` when not even a tag could be read.
        """
        raw = frame.raw
        match = _HEAD.match(raw)
        if match is None:
            tag_end = raw.find(b" ")
            tag = raw[:tag_end] if 0 < tag_end <= 64 else None
            error = ParseError("Error in IMAP command: expected tag and command name")
            if tag is not None and _HEAD.match(tag + b" X"):
                error.reply = error.reply.with_tag(tag)
            raise error
        tag = match.group(1)
        name = match.group(2).decode("ascii").upper()
        pos = match.end()
        if name == "UID":
            sub = _UID_SUB.match(raw, pos)
            if sub is None or sub.group(1).upper().decode() not in _UID_COMMANDS:
                error = ParseError("Error in IMAP command: unknown UID command")
                error.reply = error.reply.with_tag(tag)
                raise error
            name = "UID " + sub.group(1).decode().upper()
            pos = sub.end()
        return cls(frame, tag, name, pos, quirks)

    @property
    def uid(self) -> bool:
        return self.name.startswith("UID ")

    @property
    def base_name(self) -> str:
        """The name without ``UID ``."""
        return self.name[4:] if self.uid else self.name

    @property
    def args_pos(self) -> int:
        """Offset in the frame where the arguments begin (at their leading space)."""
        return self._args_pos

    @property
    def args(self) -> CommandArgs:
        """The typed arguments (parsed once, on first access).

        Raises:
            ParseError: the arguments do not follow the command's grammar; the
                reply is a ``BAD`` tagged with this command's tag.
        """
        if self._args is None:
            reader = Reader(
                self.frame,
                self._args_pos,
                redact=self.name in _SECRET_COMMANDS,
                quirks=self.quirks,
            )
            try:
                self._args = _parse_args(self.base_name, self.uid, reader)
            except ParseError as exc:
                exc.reply = Reply(kind="BAD", text=exc.text, tag=self.tag)
                raise
        return self._args

    def __repr__(self) -> str:
        return f"Command({self.tag!r}, {self.name!r})"


# -- argument parsers ---------------------------------------------------------------


def _atoms(values: tuple[Value, ...]) -> list[str]:
    return [v.value.decode("latin-1") for v in values if isinstance(v, Atom)]


def _no_args(reader: Reader) -> NoArgs:
    reader.expect_end()
    return NoArgs()


def _login(reader: Reader) -> LoginArgs:
    reader.sp()
    userid = reader.astring()
    reader.sp()
    password = Secret(reader.astring())
    reader.expect_end()
    return LoginArgs(userid, password)


def _authenticate(reader: Reader) -> AuthenticateArgs:
    reader.sp()
    mechanism = reader.atom().decode("ascii", "replace").upper()
    initial = None
    if not reader.at_end():
        reader.sp()
        start = reader.pos
        token = reader.rest().rstrip(b" ")
        if token != b"=" and _BASE64.fullmatch(token) is None:
            reader.pos = start
            raise reader.error("Initial response must be base64 or '='")  # RFC 4959
        initial = Secret(b"" if token == b"=" else token)
    reader.expect_end()
    return AuthenticateArgs(mechanism, initial)


def _enable(reader: Reader) -> EnableArgs:
    caps = []
    while not reader.at_end():
        reader.sp()
        caps.append(reader.atom().decode("latin-1"))
    if not caps:
        raise reader.error("ENABLE needs a capability")
    reader.expect_end()
    return EnableArgs(tuple(caps))


def read_id_params(reader: Reader) -> tuple[tuple[bytes, bytes | None], ...] | None:
    """``id-params-list`` (RFC 2971): ``NIL`` or a list of string/nstring pairs."""
    if reader.maybe_nil():
        return None
    items = reader.paren_list(reader.nstring)
    if len(items) % 2:
        raise reader.error("ID parameters come in pairs")
    pairs = []
    for i in range(0, len(items), 2):
        key = items[i]
        if key is None:
            raise reader.error("ID field name must be a string")
        pairs.append((key, items[i + 1]))
    return tuple(pairs)


def _id(reader: Reader) -> IdArgs:
    reader.sp()
    params = read_id_params(reader)
    reader.expect_end()
    return IdArgs(params)


def _compress(reader: Reader) -> CompressArgs:
    reader.sp()
    mechanism = reader.keyword()
    reader.expect_end()
    return CompressArgs(mechanism)


def _param_names(reader: Reader) -> Iterator[str]:
    """The names in an optional ``SP "(" param *(SP param) ")"`` (RFC 4466).

    SELECT/EXAMINE and CREATE parameters and FETCH modifiers share this shape; the
    caller reads each parameter's value, if it has one, before asking for the next.
    """
    if reader.at_end():
        return
    reader.sp()
    reader.char(0x28)
    while True:
        yield reader.keyword()
        spaced = reader.maybe_sp()
        if reader.maybe_char(0x29):
            return
        if not spaced:
            raise reader.error("Expected SP or ')'")


def _select(reader: Reader) -> SelectArgs:
    reader.sp()
    mailbox = reader.mailbox()
    condstore = False
    qresync = None
    other: list[tuple[str, Value]] = []
    for name in _param_names(reader):
        if name == "CONDSTORE":
            condstore = True
        elif name == "QRESYNC":
            reader.sp()
            qresync = _qresync(reader)
        else:
            other.append((name, reader.maybe_ext_value()))
    reader.expect_end()
    return SelectArgs(mailbox, condstore, qresync, tuple(other))


def _qresync(reader: Reader) -> QresyncParams:
    # "(" uidvalidity SP mod-sequence-value [SP known-uids] [SP seq-match-data] ")"
    reader.char(0x28)
    uidvalidity = reader.nz_number()
    reader.sp()
    modseq = reader.number64()
    known = None
    seq_match = None
    if reader.next_is_sp_item():
        reader.sp()
        if reader.peek() != 0x28:
            known = reader.sequence_set()
            if reader.next_is_sp_item():
                reader.sp()
        if reader.peek() == 0x28:
            reader.char(0x28)
            seqs = reader.sequence_set()
            reader.sp()
            uids = reader.sequence_set()
            reader.close_paren()
            seq_match = (seqs, uids)
    reader.close_paren()
    return QresyncParams(uidvalidity, modseq, known, seq_match)


#: How many astrings follow the mailbox of each ACL-like command.
_ACL_STRINGS = {
    "SETACL": 2,
    "DELETEACL": 1,
    "GETACL": 0,
    "LISTRIGHTS": 1,
    "MYRIGHTS": 0,
    "GETQUOTAROOT": 0,
}


def _acl(strings: int) -> Callable[[Reader], AclArgs]:
    def parse(reader: Reader) -> AclArgs:
        reader.sp()
        mailbox = reader.mailbox()
        values = []
        for _ in range(strings):
            reader.sp()
            values.append(reader.astring())
        reader.expect_end()
        return AclArgs(mailbox, tuple(values))

    return parse


def _metadata(get: bool) -> Callable[[Reader], MetadataArgs]:
    def parse(reader: Reader) -> MetadataArgs:
        reader.sp()
        options: tuple[Value, ...] = ()
        if get and reader.peek() == 0x28:  # "(": GETMETADATA's options
            options = reader.paren_list(reader.value)
            reader.sp()
        mailbox = reader.mailbox()
        rest = []
        while not reader.at_end():
            reader.sp()
            rest.append(reader.value())
        if not rest:
            raise reader.error("Expected metadata entries")
        return MetadataArgs(mailbox, options, tuple(rest))

    return parse


def _mailbox_only(reader: Reader) -> MailboxArgs:
    reader.sp()
    mailbox = reader.mailbox()
    reader.expect_end()
    return MailboxArgs(mailbox)


def _create(reader: Reader) -> CreateArgs:
    reader.sp()
    mailbox = reader.mailbox()
    special_use: tuple[bytes, ...] = ()
    other: list[tuple[str, Value]] = []
    for name in _param_names(reader):
        if name == "USE":
            reader.sp()
            special_use = reader.flag_list()
        else:
            other.append((name, reader.maybe_ext_value()))
    reader.expect_end()
    return CreateArgs(mailbox, special_use, tuple(other))


def _rename(reader: Reader) -> RenameArgs:
    reader.sp()
    old = reader.mailbox()
    reader.sp()
    new = reader.mailbox()
    reader.expect_end()
    return RenameArgs(old, new)


def _options(reader: Reader) -> tuple[tuple[str, tuple[Value, ...]], ...]:
    """``"(" [opt *(SP opt)] ")"`` where an option is a name with an optional list."""
    reader.char(0x28)
    opts: list[tuple[str, tuple[Value, ...]]] = []
    while True:
        while reader.peek() == 0x20:
            reader.pos += 1
        if reader.maybe_char(0x29):
            break
        if opts and reader.raw[reader.pos - 1] != 0x20:
            raise reader.error("Expected SP or ')'")
        name = reader.keyword()
        args: tuple[Value, ...] = ()
        if reader.next_is_sp_item() and reader.raw[reader.pos + 1] == 0x28:
            reader.sp()
            value = reader.value()
            assert isinstance(value, tuple)
            args = value
        elif name == "PARTIAL" and reader.next_is_sp_item():
            reader.sp()
            args = (reader.value(),)
        opts.append((name, args))
    return tuple(opts)


def _list(reader: Reader) -> ListArgs:
    reader.sp()
    selection: tuple[str, ...] = ()
    if reader.peek() == 0x28:
        selection = tuple(s.upper() for s in _atoms(reader.paren_list(reader.value)))
        reader.sp()
    reference = reader.mailbox()
    reader.sp()
    if reader.peek() == 0x28:
        patterns = reader.paren_list(reader.list_mailbox, allow_empty=False)
    else:
        patterns = (reader.list_mailbox(),)
    return_options: tuple[tuple[str, tuple[Value, ...]], ...] = ()
    if not reader.at_end():
        reader.sp()
        reader.expect_keyword("RETURN")
        reader.sp()
        return_options = _options(reader)
    reader.expect_end()
    return ListArgs(reference, patterns, selection, return_options)


def _lsub(reader: Reader) -> ListArgs:
    reader.sp()
    reference = reader.mailbox()
    reader.sp()
    pattern = reader.list_mailbox()
    reader.expect_end()
    return ListArgs(reference, (pattern,))


def _status(reader: Reader) -> StatusArgs:
    reader.sp()
    mailbox = reader.mailbox()
    reader.sp()
    items = reader.paren_list(reader.keyword, allow_empty=False)
    reader.expect_end()
    return StatusArgs(mailbox, items)


def _append(reader: Reader) -> AppendArgs:
    reader.sp()
    mailbox = reader.mailbox()
    messages: list[AppendMessage] = []
    while not reader.at_end() or not messages:
        messages.append(_append_message(reader))
    reader.expect_end()
    return AppendArgs(mailbox, tuple(messages))


def _append_message(reader: Reader) -> AppendMessage:
    reader.sp()
    flags = None
    date = None
    if reader.peek() == 0x28:
        flags = reader.flag_list()
        reader.sp()
    if reader.peek() == 0x22:
        date = reader.date_time()
        reader.sp()
    octet = reader.peek()
    if octet in (0x7B, 0x7E):  # "{" or "~"
        return AppendMessage(flags, date, reader.literal(binary_ok=True))
    word = reader.keyword()
    if word == "UTF8":
        reader.sp()
        reader.char(0x28)
        data = reader.literal(binary_ok=True)
        if not data.binary:
            raise reader.error("UTF8 data must be a literal8")
        reader.close_paren()
        return AppendMessage(flags, date, data, utf8=True)
    if word == "CATENATE":
        reader.sp()
        parts = reader.paren_list(lambda: _cat_part(reader), allow_empty=False)
        return AppendMessage(flags, date, None, catenate=parts)
    raise reader.error("Expected message literal")


def _cat_part(reader: Reader) -> CatenatePart:
    kind = reader.keyword()
    reader.sp()
    if kind == "TEXT":
        return CatenatePart("TEXT", text=reader.literal())
    if kind == "URL":
        return CatenatePart("URL", url=reader.astring())
    raise reader.error("Expected TEXT or URL")


def _search(reader: Reader) -> SearchArgs:
    reader.sp()
    return_options = None
    if reader.maybe_keyword("RETURN"):
        reader.sp()
        return_options = _options(reader)
        reader.sp()
    charset = None
    if reader.maybe_keyword("CHARSET"):
        reader.sp()
        charset = reader.astring()
        reader.sp()
    return SearchArgs(read_search_program(reader), charset, return_options)


_FETCH_MACROS = {
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}


def _fetch(reader: Reader) -> FetchArgs:
    reader.sp()
    seqset = reader.sequence_set()
    reader.sp()
    macro = None
    if reader.peek() == 0x28:
        items = reader.paren_list(reader.fetch_item, allow_empty=False)
    else:
        macro = reader.maybe_keyword(*_FETCH_MACROS)
        if macro is not None:
            items = tuple(FetchItem(name) for name in _FETCH_MACROS[macro])
        else:
            items = (reader.fetch_item(),)
    changedsince = None
    vanished = False
    other: list[tuple[str, Value]] = []
    for name in _param_names(reader):
        if name == "CHANGEDSINCE":
            reader.sp()
            changedsince = reader.number64()  # 0 accepted (QUIRKS K3)
        elif name == "VANISHED":
            vanished = True
        else:
            other.append((name, reader.maybe_ext_value()))
    reader.expect_end()
    return FetchArgs(seqset, items, macro, changedsince, vanished, tuple(other))


_STORE_ITEM = re.compile(rb"([+-]?)([A-Za-z0-9-]+(?:\.[A-Za-z]+)*?)(\.SILENT)?(?= )", re.I)


def _store(reader: Reader) -> StoreArgs:
    reader.sp()
    seqset = reader.sequence_set()
    reader.sp()
    unchangedsince = None
    if reader.peek() == 0x28:
        reader.char(0x28)
        reader.expect_keyword("UNCHANGEDSINCE")
        reader.sp()
        unchangedsince = reader.number64()
        reader.close_paren()
        reader.sp()
    match = _STORE_ITEM.match(reader.raw, reader.pos, reader.end)
    if match is None:
        raise reader.error("Expected FLAGS, +FLAGS or -FLAGS")
    reader.pos = match.end()
    mode = match.group(1).decode()
    item = match.group(2).decode("ascii").upper()
    silent = match.group(3) is not None
    reader.sp()
    if reader.peek() == 0x28:
        flags = reader.flag_list()
    else:
        flag_items = [reader.flag()]
        while not reader.at_end():
            reader.sp()
            flag_items.append(reader.flag())
        flags = tuple(flag_items)
    reader.expect_end()
    return StoreArgs(seqset, mode, item, silent, flags, unchangedsince)


def _copy(reader: Reader) -> CopyArgs:
    reader.sp()
    seqset = reader.sequence_set()
    reader.sp()
    mailbox = reader.mailbox()
    reader.expect_end()
    return CopyArgs(seqset, mailbox)


def _expunge(reader: Reader, uid: bool) -> NoArgs | UidExpungeArgs:
    if not uid:
        return _no_args(reader)
    reader.sp()
    seqset = reader.sequence_set()
    reader.expect_end()
    return UidExpungeArgs(seqset)


def _generic(reader: Reader) -> GenericArgs:
    return GenericArgs(reader.values())


_PARSERS: dict[str, Callable[[Reader], CommandArgs]] = {
    "CAPABILITY": _no_args,
    "NOOP": _no_args,
    "LOGOUT": _no_args,
    "STARTTLS": _no_args,
    "CHECK": _no_args,
    "CLOSE": _no_args,
    "UNSELECT": _no_args,
    "NAMESPACE": _no_args,
    "IDLE": _no_args,
    "UNAUTHENTICATE": _no_args,
    "LOGIN": _login,
    "AUTHENTICATE": _authenticate,
    "ENABLE": _enable,
    "ID": _id,
    "COMPRESS": _compress,
    "SELECT": _select,
    "EXAMINE": _select,
    "CREATE": _create,
    "DELETE": _mailbox_only,
    "SUBSCRIBE": _mailbox_only,
    "UNSUBSCRIBE": _mailbox_only,
    "RENAME": _rename,
    "LIST": _list,
    "LSUB": _lsub,
    "STATUS": _status,
    "APPEND": _append,
    "SEARCH": _search,
    "FETCH": _fetch,
    "STORE": _store,
    "COPY": _copy,
    "MOVE": _copy,
    **{name: _acl(count) for name, count in _ACL_STRINGS.items()},
    "GETMETADATA": _metadata(get=True),
    "SETMETADATA": _metadata(get=False),
}


def _parse_args(name: str, uid: bool, reader: Reader) -> CommandArgs:
    if name == "EXPUNGE":
        return _expunge(reader, uid)
    parser = _PARSERS.get(name)
    if parser is None:
        return _generic(reader)
    return parser(reader)
