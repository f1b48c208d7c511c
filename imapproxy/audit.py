"""The audit trail: one structured line per command ("canonical log lines").

:func:`describe` reads what a command touches from its parsed arguments: the
mailboxes (decoded to text; both of RENAME, the destination of COPY/MOVE with the
selected mailbox added by the session) and a short summary of its sequence or UID
set. :class:`CommandAudit` rides along with the command's upstream request and
collects its size each way; the session writes the line when the command ends
(``event="command"`` on the ``imapproxy.audit`` logger), with the tag, the result
and response code, the duration and the names of the rules that matched.

Nothing here sees a credential: LOGIN and AUTHENTICATE are never described, and
ID values are not logged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from imapproxy.wire import Command, Mailbox, SequenceSet
from imapproxy.wire.commands import (
    AclArgs,
    AppendArgs,
    CommandArgs,
    CopyArgs,
    CreateArgs,
    FetchArgs,
    ListArgs,
    MailboxArgs,
    MetadataArgs,
    RenameArgs,
    SelectArgs,
    StatusArgs,
    StoreArgs,
    UidExpungeArgs,
)
from imapproxy.wire.reader import ParseError

__all__ = ["CommandAudit", "describe", "describe_args", "mailbox_text", "set_summary"]

#: The longest sequence-set text written to an audit line.
MAX_SET_TEXT = 64


def mailbox_text(mailbox: Mailbox, *, utf8: bool = False) -> str:
    """A mailbox name as text (modified UTF-7 decoded); the raw form when it does
    not decode (a name the server invented, QUIRKS L3)."""
    try:
        return mailbox.decode(utf8=utf8)
    except ValueError:
        return mailbox.raw.decode("utf-8", "replace")


def set_summary(value: SequenceSet) -> str:
    """A sequence set as written, shortened to :data:`MAX_SET_TEXT` characters."""
    text = str(value)
    if len(text) > MAX_SET_TEXT:
        return text[: MAX_SET_TEXT - 3] + "..."
    return text


#: Arguments with one ``mailbox``.
_NAMES_ONE_MAILBOX = (
    SelectArgs | MailboxArgs | CreateArgs | StatusArgs | AppendArgs | AclArgs | MetadataArgs
)


def describe(command: Command, *, utf8: bool = False) -> tuple[tuple[str, ...], str | None]:
    """The mailboxes a command names and its sequence-set summary (if any).

    A command whose arguments do not parse (it was refused) names nothing."""
    try:
        args = command.args
    except ParseError:
        return (), None
    return describe_args(args, utf8=utf8)


def describe_args(args: CommandArgs, *, utf8: bool = False) -> tuple[tuple[str, ...], str | None]:
    """:func:`describe` for arguments already parsed (or translated)."""
    mailboxes: tuple[Mailbox, ...] = ()
    sequence: SequenceSet | None = None
    if isinstance(args, _NAMES_ONE_MAILBOX):
        mailboxes = (args.mailbox,)
    elif isinstance(args, RenameArgs):
        mailboxes = (args.old, args.new)
    elif isinstance(args, CopyArgs):
        mailboxes, sequence = (args.mailbox,), args.sequence_set
    elif isinstance(args, FetchArgs | StoreArgs | UidExpungeArgs):
        sequence = args.sequence_set
    elif isinstance(args, ListArgs):
        mailboxes = (args.reference,) if args.reference.raw else ()
    names = tuple(mailbox_text(mailbox, utf8=utf8) for mailbox in mailboxes)
    return names, set_summary(sequence) if sequence is not None else None


@dataclass(slots=True)
class CommandAudit:
    """What the audit line of one relayed command says (filled as it goes)."""

    tag: bytes
    command: str
    mailboxes: tuple[str, ...] = ()
    sequence: str | None = None
    rules: tuple[str, ...] = ()
    #: The level of its line: a rule's ``log`` level, else debug.
    level: str = "debug"
    #: Octets of the command sent upstream, and of responses relayed to the
    #: client while it was the oldest command in flight.
    bytes_up: int = 0
    bytes_down: int = 0
    extra: dict[str, object] = field(default_factory=dict)

    def fields(self) -> dict[str, object]:
        out: dict[str, object] = {
            "tag": self.tag.decode("ascii", "replace"),
            "command": self.command,
        }
        if self.mailboxes:
            out["mailboxes"] = list(self.mailboxes)
        if self.sequence is not None:
            out["set"] = self.sequence
        out["bytes_up"] = self.bytes_up
        out["bytes_down"] = self.bytes_down
        out["rules"] = list(self.rules)
        out.update(self.extra)
        return out
