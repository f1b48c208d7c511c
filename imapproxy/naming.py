"""Mailbox names and flags between the client's form and the upstream's
(docs/rules.md: ``rewrite.mailbox``, ``rewrite.separator``, ``rewrite.flags``).

A :class:`Names` pairs a session's :class:`~imapproxy.rules.Rewrite` with the
connection's name encoding (modified UTF-7, or UTF-8 once UTF8=ACCEPT is on) and
translates wire values, never raw bytes:

* :meth:`Names.command_args`: a command's arguments with every mailbox name in
  the upstream's form (SELECT/EXAMINE, CREATE, DELETE, RENAME, SUBSCRIBE,
  UNSUBSCRIBE, STATUS, APPEND, COPY/MOVE, LIST/LSUB with their patterns);
* :meth:`Names.response`: a LIST, LSUB, STATUS or NAMESPACE response in the
  client's form, or None when the client must not see it.

It also maps flags and keywords (``rewrite.flags``): STORE, SEARCH KEYWORD and
APPEND's flags go upstream in the server's form (:meth:`Names.command_flags` for
an APPEND relayed as it arrives); FLAGS, PERMANENTFLAGS and FETCH FLAGS come back
in the client's (:meth:`Names.response_flags`, on octets, skipping quoted strings
and literal data).

LIST patterns are translated when the rename map cannot change what they match
(``Sent Items/%`` is ``Sent/%``); otherwise the upstream is asked for ``*`` and
the answers are filtered against the client's own pattern (:meth:`Names.listing`).
An upstream name that the map shadows (the server's own ``Sent Items`` while the
client's ``Sent Items`` is the server's ``Sent``) is never shown: every name the
client sees leads back to the mailbox it was listed for.

Pure: no I/O. Names that have no form on the other side raise
:class:`Untranslatable` (commands) or are left out (responses).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from imapproxy.rules import MailboxPattern, Rewrite, canonical
from imapproxy.wire import Command, Mailbox, Response
from imapproxy.wire.build import FrameBuilder, build_response
from imapproxy.wire.commands import (
    AclArgs,
    AppendArgs,
    CommandArgs,
    CopyArgs,
    CreateArgs,
    ListArgs,
    MailboxArgs,
    MetadataArgs,
    RenameArgs,
    SearchArgs,
    SelectArgs,
    StatusArgs,
    StoreArgs,
)
from imapproxy.wire.reader import ParseError, Reader, Value
from imapproxy.wire.responses import (
    ListData,
    MailboxStatus,
    NamespaceData,
    NamespaceDescriptor,
)
from imapproxy.wire.search import SearchKey

__all__ = ["RENAMED_RESPONSES", "Listing", "Names", "Untranslatable"]

#: Untagged responses whose first value is a mailbox name (RFC 4314, RFC 9208).
_MAILBOX_FIRST = frozenset({"ACL", "LISTRIGHTS", "MYRIGHTS", "QUOTAROOT", "METADATA"})
#: Untagged responses that carry mailbox names the client must see translated.
RENAMED_RESPONSES = frozenset({"LIST", "LSUB", "STATUS", "NAMESPACE"}) | _MAILBOX_FIRST

_WILDCARDS = ("*", "%")

#: Quoted strings and literals (skipped: data, not syntax) and the flag lists of
#: FLAGS, PERMANENTFLAGS and FETCH FLAGS in a response's octets.
_RESPONSE_FLAGS = re.compile(
    rb'(?P<q>"(?:[^"\\\r\n]|\\.)*")'
    rb"|(?P<lit>~?\{(?P<n>[0-9]+)\+?\}\r\n)"
    rb"|(?<![A-Za-z0-9_.\\-])(?:PERMANENT)?FLAGS \((?P<list>[^(){}\"\r\n]*)\)",
    re.IGNORECASE,
)
#: KEYWORD and UNKEYWORD search keys with their flag, anywhere in a command.
_KEYWORD_KEYS = re.compile(rb"(?i)(?<![A-Za-z0-9])(?:UN)?KEYWORD +([^ ()\"{}\r\n]+)")
#: The same for a command's octets (APPEND): every parenthesised list of atoms.
_COMMAND_FLAGS = re.compile(
    rb'(?P<q>"(?:[^"\\\r\n]|\\.)*")'
    rb"|(?P<lit>~?\{(?P<n>[0-9]+)[+-]?\}\r\n)"
    rb"|\((?P<list>[^(){}\"\r\n]*)\)",
)


class Untranslatable(ValueError):
    """A mailbox name (or pattern) has no form on the other side."""


@dataclass(slots=True)
class Listing:
    """What a LIST or LSUB asked (the client's patterns) and the names shown for
    it so far."""

    pattern: MailboxPattern
    shown: set[bytes] = field(default_factory=set)

    def matches(self, name: str) -> bool:
        return self.pattern.matches(name)


@dataclass(frozen=True, slots=True)
class Names:
    """Mailbox name translation for one session (see the module docstring)."""

    rewrite: Rewrite
    utf8: bool = False

    # -- text <-> wire ---------------------------------------------------------------

    def _text(self, raw: bytes) -> str:
        if self.utf8:
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise Untranslatable("mailbox name is not valid UTF-8") from exc
        try:
            return Mailbox(raw).decode()
        except ValueError as exc:
            raise Untranslatable(str(exc)) from exc

    def _wire(self, text: str) -> bytes:
        return text.encode("utf-8") if self.utf8 else Mailbox.from_str(text).raw

    @property
    def _same_separator(self) -> bool:
        return self.rewrite.client_separator == self.rewrite.upstream_separator

    # -- commands --------------------------------------------------------------------

    def up(self, mailbox: Mailbox) -> Mailbox:
        """The upstream's name for the client's ``mailbox`` (the same object when
        nothing changes, so the name is relayed as the client wrote it)."""
        text = mailbox.decode(utf8=self.utf8) if mailbox.is_inbox else self._text(mailbox.raw)
        client = canonical(text, self.rewrite.client_separator)
        try:
            upstream = self.rewrite.to_upstream(text)
            back = self.rewrite.to_client(upstream)
        except ValueError as exc:
            raise Untranslatable(str(exc)) from exc
        if back != client:
            # The server's mailbox has another name for the client ("Trash" is
            # "Deleted Items"): this name is not one the client can see.
            raise Untranslatable(f"mailbox {text!r} is shown under another name")
        if self._same_separator and upstream == client:
            return mailbox
        return Mailbox.from_str(upstream, utf8=self.utf8)

    def pattern_up(self, reference: Mailbox, pattern: bytes) -> bytes:
        """The upstream's LIST pattern for the client's ``reference`` and
        ``pattern`` (taken together, as servers do: the reference is a prefix)."""
        full = self._text(reference.raw) + self._text(pattern)
        if not full:
            return pattern  # LIST "" "": the hierarchy separator, no names
        cut = min((i for i in map(full.find, _WILDCARDS) if i >= 0), default=-1)
        if cut < 0:
            return self.up(Mailbox(self._wire(full))).raw
        literal, rest = full[:cut], full[cut:]
        client_sep, upstream_sep = self.rewrite.client_separator, self.rewrite.upstream_separator
        for client, _upstream in self.rewrite.mailboxes:
            head = client + client_sep
            if head.startswith(literal) and not literal.startswith(head):
                # The pattern may match a renamed mailbox (or reach below it)
                # through its wildcards: ask for everything, filter the answers.
                return b"*"
        stripped = literal.rstrip(client_sep)
        trailing = literal[len(stripped) :]
        try:
            translated = self.rewrite.to_upstream(stripped) if stripped else ""
        except ValueError as exc:
            raise Untranslatable(str(exc)) from exc
        if not self._same_separator:
            if upstream_sep in rest:
                raise Untranslatable(f"pattern contains the server's separator {upstream_sep!r}")
            trailing = trailing.replace(client_sep, upstream_sep)
            rest = rest.replace(client_sep, upstream_sep)
        return self._wire(translated + trailing + rest)

    def command_args(self, args: CommandArgs) -> CommandArgs | None:
        """``args`` with mailbox names in the upstream's form; None when no name
        changes (or the command names none).

        Raises:
            Untranslatable: a name has no upstream form.
        """
        renamed = self._renamed_args(args) if self.rewrite.renames else None
        if not self.rewrite.flags:
            return renamed
        flagged = self._flag_args(renamed or args)
        return None if flagged is args else flagged

    def _renamed_args(self, args: CommandArgs) -> CommandArgs | None:
        if isinstance(
            args,
            SelectArgs
            | MailboxArgs
            | CreateArgs
            | StatusArgs
            | AppendArgs
            | CopyArgs
            | AclArgs
            | MetadataArgs,
        ):
            mailbox = self.up(args.mailbox)
            return None if mailbox is args.mailbox else replace(args, mailbox=mailbox)
        if isinstance(args, RenameArgs):
            old, new = self.up(args.old), self.up(args.new)
            return None if old is args.old and new is args.new else RenameArgs(old, new)
        if isinstance(args, ListArgs):
            patterns = tuple(self._patterns_up(args))
            if not patterns:
                raise Untranslatable("no pattern names a mailbox the client can see")
            if patterns == args.patterns and not args.reference.raw:
                return None
            if not any(patterns) and args.reference.raw:
                # LIST "ref" "": the separator (and root) of the reference's hierarchy.
                return replace(args, reference=self.up(args.reference))
            return replace(args, reference=Mailbox(b""), patterns=patterns)
        return None

    def _patterns_up(self, args: ListArgs) -> Iterator[bytes]:
        """The upstream's patterns of a LIST; one that names only what the client
        cannot see (the server's own name of a renamed mailbox) lists nothing."""
        for pattern in args.patterns:
            with contextlib.suppress(Untranslatable):
                yield self.pattern_up(args.reference, pattern)

    def listing(self, args: ListArgs) -> Listing | None:
        """What the client's LIST/LSUB asked for, to filter the upstream's answers
        (None: a separator query, nothing to filter)."""
        try:
            fulls = [self._text(args.reference.raw) + self._text(p) for p in args.patterns]
        except Untranslatable:
            return None
        if not all(fulls):
            return None
        return Listing(MailboxPattern.compile(fulls, self.rewrite.client_separator))

    @staticmethod
    def append_head(
        command: Command, mailbox: Mailbox, *, utf8: bool = False
    ) -> tuple[int, bytes] | None:
        """For an APPEND relayed as it arrives: the offset where its mailbox
        argument ends in the client's frame (after its data when it is a literal),
        and what replaces the frame up to there (tag, name and the upstream's
        ``mailbox``, never a literal). None when the mailbox cannot be read.

        Raises:
            Untranslatable: the upstream's name would need a literal itself.
        """
        reader = Reader(command.frame, command.args_pos)
        try:
            reader.sp()
            reader.mailbox()
        except ParseError:
            return None
        end = reader.pos
        name = FrameBuilder(utf8=utf8).mailbox(mailbox).build()
        if name.literals:
            raise Untranslatable("the server's mailbox name needs a literal")
        return end, command.frame.raw[: command.args_pos] + b" " + name.raw[:-2]

    # -- flags and keywords (rewrite.flags) -----------------------------------------

    def _flag(self, flag: bytes, *, up: bool) -> bytes:
        text = flag.decode("ascii", "replace")
        mapped = self.rewrite.flag_to_upstream(text) if up else self.rewrite.flag_to_client(text)
        return flag if mapped == text else mapped.encode("ascii")

    def _shadowed_flag(self, flag: bytes) -> bool:
        """A server's flag spelled like a client's mapped one (``$Junk`` while the
        client's ``$Junk`` is the server's ``Junk``): the client never sees it."""
        text = flag.decode("ascii", "replace").upper()
        return any(client.upper() == text for client, _upstream in self.rewrite.flags) and (
            self.rewrite.flag_to_client(flag.decode("ascii", "replace")).upper() == text
        )

    def _flags(self, flags: tuple[bytes, ...], *, up: bool) -> tuple[bytes, ...]:
        return tuple(self._flag(flag, up=up) for flag in flags)

    def _search_key(self, key: SearchKey) -> SearchKey:
        args = tuple(
            self._search_key(arg)
            if isinstance(arg, SearchKey)
            else self._flag(arg, up=True)
            if key.name in ("KEYWORD", "UNKEYWORD") and isinstance(arg, bytes)
            else arg
            for arg in key.args
        )
        return key if args == key.args else SearchKey(key.name, args)

    def _flag_args(self, args: CommandArgs) -> CommandArgs:
        if isinstance(args, StoreArgs):
            flags = self._flags(args.flags, up=True)
            return args if flags == args.flags else replace(args, flags=flags)
        if isinstance(args, SearchArgs):
            key = self._search_key(args.key)
            return args if key is args.key else replace(args, key=key)
        if isinstance(args, AppendArgs):
            messages = tuple(
                m if m.flags is None else replace(m, flags=self._flags(m.flags, up=True))
                for m in args.messages
            )
            return args if messages == args.messages else replace(args, messages=messages)
        return args

    def unmapped_keywords(self, raw: bytes) -> bool:
        """Whether a command the codec does not parse (SORT, THREAD) searches for a
        keyword that is mapped: it would search for the client's form upstream."""
        if not self.rewrite.flags:
            return False
        return any(
            self._flag(match.group(1), up=True) != match.group(1)
            for match in _KEYWORD_KEYS.finditer(raw)
        )

    def command_flags(self, segment: bytes) -> bytes:
        """Flags of an APPEND relayed as it arrives, in the server's form:
        ``segment`` is octets of the command outside its literals."""
        return self._map_lists(segment, _COMMAND_FLAGS, up=True)

    def response_flags(self, data: bytes) -> bytes:
        """FLAGS, PERMANENTFLAGS and FETCH FLAGS in ``data`` (a response, or a
        part of one) in the client's form; literal data is left alone."""
        return self._map_lists(data, _RESPONSE_FLAGS, up=False)

    def _map_lists(self, data: bytes, pattern: re.Pattern[bytes], *, up: bool) -> bytes:
        if not self.rewrite.flags:
            return data
        out: list[bytes] = []
        pos = 0
        while (match := pattern.search(data, pos)) is not None:
            if match.group("lit") is not None:
                end = match.end() + int(match.group("n"))  # its data, if here
                out.append(data[pos:end])
                pos = end
            elif match.group("q") is not None:
                out.append(data[pos : match.end()])
                pos = match.end()
            else:
                items = match.group("list")
                mapped = b" ".join(
                    self._flag(f, up=up)
                    for f in items.split(b" ")
                    if f and (up or not self._shadowed_flag(f))
                )
                out.append(data[pos : match.start("list")] + mapped)
                pos = match.end("list")
        if not out:
            return data
        out.append(data[pos:])
        return b"".join(out)

    # -- responses -------------------------------------------------------------------

    def down(self, mailbox: Mailbox) -> Mailbox | None:
        """The client's name for the upstream's ``mailbox``; None when the client
        has no name for it (a level holds the client's separator, or the rename
        map shadows it). A name that does not decode is passed unchanged."""
        if mailbox.is_inbox:
            return mailbox
        try:
            text = self._text(mailbox.raw)
        except Untranslatable:
            return mailbox
        rewrite = self.rewrite
        try:
            client = rewrite.to_client(text)
            back = rewrite.to_upstream(client)
        except ValueError:
            return None
        upstream = canonical(text, rewrite.upstream_separator)
        if back != upstream:
            return None  # shadowed: the client's name leads to another mailbox
        if self._same_separator and client == upstream:
            return mailbox
        return Mailbox.from_str(client, utf8=self.utf8)

    def _delimiter(self, delimiter: bytes | None) -> bytes | None:
        if delimiter == self.rewrite.upstream_separator.encode():
            return self.rewrite.client_separator.encode()
        return delimiter

    def response(self, response: Response, listing: Listing | None = None) -> bytes | None:
        """``response`` (LIST, LSUB, STATUS or NAMESPACE) as the client sees it:
        its raw bytes when nothing changes, rebuilt when a name does, None when
        the client must not see it (no client name, or outside ``listing``)."""
        if response.name in _MAILBOX_FIRST:
            return self._mailbox_first(response)
        try:
            data = response.data
        except ParseError:
            return response.frame.raw
        rebuilt: ListData | MailboxStatus | NamespaceData
        if isinstance(data, ListData):
            mailbox = self.down(data.mailbox)
            if mailbox is None:
                return None
            if not self._listed(mailbox, listing):
                if response.name == "LSUB" and listing is not None:
                    return self._lsub_parent(mailbox, listing)
                return None
            if listing is not None:
                listing.shown.add(mailbox.raw)
            extended = tuple(self._extended(tag, value) for tag, value in data.extended)
            delimiter = self._delimiter(data.delimiter)
            rebuilt = ListData(data.flags, delimiter, mailbox, extended)
            if rebuilt == data and mailbox is data.mailbox:
                return response.frame.raw
        elif isinstance(data, MailboxStatus):
            mailbox = self.down(data.mailbox)
            if mailbox is None or not self._listed(mailbox, listing):
                return None
            if mailbox is data.mailbox:
                return response.frame.raw
            rebuilt = replace(data, mailbox=mailbox)
        elif isinstance(data, NamespaceData):
            rebuilt = NamespaceData(
                self._namespaces(data.personal),
                self._namespaces(data.other),
                self._namespaces(data.shared),
            )
            if rebuilt == data:
                return response.frame.raw
        else:
            return response.frame.raw
        return build_response(rebuilt, name=response.name, utf8=self.utf8).raw

    def _mailbox_first(self, response: Response) -> bytes | None:
        """``* ACL mailbox ...`` (MYRIGHTS, LISTRIGHTS, QUOTAROOT): the mailbox in
        the client's form, the rest as it came."""
        raw = response.frame.raw
        start = raw.find(b" ", 2) + 1  # after "* NAME "
        reader = Reader(response.frame, start - 1, response=True)
        try:
            reader.sp()
            mailbox = reader.mailbox()
        except ParseError:
            return raw
        client = self.down(mailbox)
        if client is None:
            return None
        if client is mailbox:
            return raw
        name = FrameBuilder(utf8=self.utf8).mailbox(client).build()
        if name.literals:
            return raw
        return raw[:start] + name.raw[:-2] + raw[reader.pos :]

    def _lsub_parent(self, mailbox: Mailbox, listing: Listing) -> bytes | None:
        """For LSUB with ``%`` asked as ``*``: a subscribed mailbox below the
        pattern's level stands for its parent, which LSUB lists as ``\\Noselect``
        when it is not subscribed itself (RFC 3501 section 6.3.9) -- once."""
        try:
            name = mailbox.decode(utf8=self.utf8)
        except ValueError:
            return None
        separator = self.rewrite.client_separator
        levels = name.split(separator)
        for depth in range(len(levels) - 1, 0, -1):
            parent = separator.join(levels[:depth])
            if listing.matches(parent):
                wire = Mailbox.from_str(parent, utf8=self.utf8)
                if wire.raw in listing.shown:
                    return None
                listing.shown.add(wire.raw)
                delimiter = separator.encode()
                data = ListData((b"\\Noselect",), delimiter, wire)
                return build_response(data, name="LSUB", utf8=self.utf8).raw
        return None

    def _listed(self, mailbox: Mailbox, listing: Listing | None) -> bool:
        if listing is None:
            return True
        try:
            return listing.matches(mailbox.decode(utf8=self.utf8))
        except ValueError:
            return True

    def _extended(self, tag: bytes, value: Value) -> tuple[bytes, Value]:
        """An extended data item of LIST: OLDNAME's name translated (RFC 5465)."""
        if tag.upper() == b"OLDNAME" and isinstance(value, tuple) and value:
            name = value[0]
            if isinstance(name, bytes):
                old = self.down(Mailbox(name))
                if old is not None:
                    return tag, (old.raw, *value[1:])
        return tag, value

    def _namespaces(
        self, group: tuple[NamespaceDescriptor, ...] | None
    ) -> tuple[NamespaceDescriptor, ...] | None:
        if group is None:
            return None
        return tuple(self._namespace(desc) for desc in group)

    def _namespace(self, desc: NamespaceDescriptor) -> NamespaceDescriptor:
        """A namespace prefix and delimiter in the client's form (``INBOX.`` with
        ``.`` upstream is ``INBOX/`` for a ``/`` client)."""
        delimiter = self._delimiter(desc.delimiter)
        try:
            text = self._text(desc.prefix)
        except Untranslatable:
            return replace(desc, delimiter=delimiter)
        separator = self.rewrite.upstream_separator
        stripped = text.rstrip(separator)
        trailing = text[len(stripped) :]
        if stripped:
            try:
                stripped = self.rewrite.to_client(stripped)
            except ValueError:
                return desc
        trailing = trailing.replace(separator, self.rewrite.client_separator)
        prefix = self._wire(stripped + trailing) if stripped or trailing else desc.prefix
        return replace(desc, prefix=prefix, delimiter=delimiter)
