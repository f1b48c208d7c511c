"""The selected-mailbox model a session keeps from the responses it relays.

:class:`SelectedMailbox` holds what a client knows about its selected mailbox:
its name, whether it was opened read-only, UIDVALIDITY, UIDNEXT, EXISTS,
HIGHESTMODSEQ and flags -- and, when a feature asks for it
(:meth:`SelectedMailbox.track_uids`), the map from sequence numbers to UIDs. The
session feeds it every untagged response it relays while the mailbox is selected
(:meth:`SelectedMailbox.apply`); nothing here does I/O.

The sequence-to-UID map follows RFC 9051 section 2.3.1.1: ``EXISTS`` appends
messages whose UIDs are not known yet (0 until a FETCH, SEARCH or the UIDNEXT
arithmetic tells), ``EXPUNGE n`` removes the n-th, ``VANISHED`` (QRESYNC) removes
by UID. The cache builds the map with ``UID SEARCH``; the multiplexer keeps one
per session.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field

from imapproxy.wire import Mailbox, Response, SequenceSet
from imapproxy.wire.reader import ParseError
from imapproxy.wire.responses import FetchData, FlagsData, VanishedData

__all__ = ["SelectedMailbox"]

#: Untagged responses that can change the model (others are relayed unread).
INTERESTING = frozenset({"EXISTS", "EXPUNGE", "FETCH", "VANISHED", "FLAGS", "OK", "NO"})
#: The largest mailbox whose sequence-to-UID map is kept (8 bytes per message):
#: beyond it, or when an upstream claims more, the map is dropped rather than
#: letting one response allocate gigabytes.
MAX_TRACKED = 10_000_000


@dataclass(slots=True)
class SelectedMailbox:
    """What a session knows about its selected mailbox."""

    name: Mailbox
    readonly: bool
    exists: int = 0
    uidvalidity: int | None = None
    uidnext: int | None = None
    highestmodseq: int | None = None
    flags: tuple[bytes, ...] = ()
    permanentflags: tuple[bytes, ...] | None = None
    #: Sequence number - 1 -> UID (0 when not yet known); None when not tracked.
    uids: list[int] | None = field(default=None, repr=False)
    #: Counts the changes of the message numbering (EXISTS, EXPUNGE, VANISHED):
    #: equal before and after an await, the sequence numbers still hold.
    numbering: int = field(default=0, repr=False, compare=False)

    def __repr__(self) -> str:
        mode = "read-only" if self.readonly else "read-write"
        tracked = f", {len(self.uids)} uids" if self.uids is not None else ""
        return (
            f"SelectedMailbox({self.name.raw!r}, {mode}, exists={self.exists}, "
            f"uidvalidity={self.uidvalidity}, uidnext={self.uidnext}{tracked})"
        )

    # -- feeding --------------------------------------------------------------

    def apply(self, response: Response) -> None:
        """Update the model from an untagged response (or a tagged status with a
        response code, e.g. SELECT's ``OK [READ-ONLY]``). Malformed data is ignored:
        the response is relayed as it is, and the model only loses precision."""
        name = response.name
        if name not in INTERESTING:
            return
        try:
            if name == "EXISTS":
                self._exists(response.number)
            elif name == "EXPUNGE":
                self._expunge(response.number)
            elif name == "FETCH":
                if self.uids is not None:
                    self._fetch(response)
            elif name == "VANISHED":
                data = response.data
                if isinstance(data, VanishedData) and not data.earlier:
                    self._vanished(data.uids)
            elif name == "FLAGS":
                flags = response.data
                if isinstance(flags, FlagsData):
                    self.flags = flags.flags
            else:
                self._code(response)
        except (ParseError, ValueError):  # ValueError: e.g. "VANISHED $" from a server
            return

    def _exists(self, count: int | None) -> None:
        if count is None:
            return
        if count != self.exists:
            self.numbering += 1
        if self.uids is not None:
            if count > MAX_TRACKED:
                self.uids = None
            elif count > len(self.uids):
                self.uids.extend([0] * (count - len(self.uids)))
            elif count < len(self.uids):  # a server that shrinks without EXPUNGE
                del self.uids[count:]
        self.exists = count

    def _expunge(self, seq: int | None) -> None:
        if seq is None or not 1 <= seq <= self.exists:
            return
        self.numbering += 1
        self.exists -= 1
        if self.uids is not None and seq <= len(self.uids):
            del self.uids[seq - 1]

    def _vanished(self, uids: SequenceSet) -> None:
        self.numbering += 1
        if self.uids is None:
            # Without the map, only the count can follow (each UID is one message).
            largest = self.uidnext - 1 if self.uidnext else 2**32 - 1
            gone = sum(high - low + 1 for low, high in uids.bounds(largest))
            self.exists = max(0, self.exists - gone)
            return
        largest = max(self.uids, default=0)
        if 0 in self.uids and _hits_a_gap(self.uids, uids.bounds(max(largest, 1))):
            # A vanished UID may be one of the slots whose UID the map does not
            # know (UIDs ascend, so only those between the known neighbours), and
            # which one cannot be told: the map is given up (asked again if needed).
            self.uids = None
            self._vanished(uids)  # the count, as without a map
            return
        keep = [uid for uid in self.uids if uid == 0 or not uids.contains(uid, largest)]
        self.exists = len(keep)
        self.uids = keep

    def _fetch(self, response: Response) -> None:
        seq = response.number
        data = response.data
        if seq is None or seq < 1 or not isinstance(data, FetchData) or self.uids is None:
            return
        uid = data.uid
        if uid is None:
            return
        if seq > len(self.uids):
            if seq > MAX_TRACKED:
                self.uids = None
                return
            self.uids.extend([0] * (seq - len(self.uids)))
            self.exists = max(self.exists, seq)
        self.uids[seq - 1] = uid
        if self.uidnext is not None and uid >= self.uidnext:
            self.uidnext = uid + 1

    def _code(self, response: Response) -> None:
        condition = response.condition
        if condition is None or condition.code is None:
            return
        code = condition.code
        if code.name == "UIDVALIDITY":
            self.uidvalidity = code.number
        elif code.name == "UIDNEXT":
            self.uidnext = code.number
        elif code.name == "HIGHESTMODSEQ":
            self.highestmodseq = code.number
        elif code.name == "READ-ONLY":
            self.readonly = True
        elif code.name == "READ-WRITE":
            self.readonly = False
        elif code.name == "PERMANENTFLAGS":
            self.permanentflags = code.flags

    # -- the sequence-number map -------------------------------------------------

    def track_uids(self) -> None:
        """Start keeping the sequence-to-UID map (UIDs unknown until learned)."""
        if self.uids is None and self.exists <= MAX_TRACKED:
            self.uids = [0] * self.exists

    def learn_uids(self, uids: list[int]) -> None:
        """Fill the map from an ascending list of every UID in the mailbox (the
        result of ``UID SEARCH ALL`` or ``UID SEARCH RETURN (ALL) ALL``)."""
        self.uids = sorted(uids)
        self.exists = len(self.uids)

    def uid_for(self, seq: int) -> int | None:
        """The UID of message ``seq``, or None when unknown or out of range."""
        if self.uids is None or not 1 <= seq <= len(self.uids):
            return None
        return self.uids[seq - 1] or None

    def seq_for(self, uid: int) -> int | None:
        """The sequence number of the message with ``uid``, if the map has it.

        UIDs ascend with sequence numbers, so a binary search over the known ones
        works while every UID is known; with gaps (0), a linear scan. UID 0 marks
        an unknown UID in the map, never a message: None."""
        if self.uids is None or uid < 1:
            return None
        if 0 not in self.uids:
            index = bisect_left(self.uids, uid)
            if index < len(self.uids) and self.uids[index] == uid:
                return index + 1
            return None
        try:
            return self.uids.index(uid) + 1
        except ValueError:
            return None

    def seqs_for(self, uids: list[int]) -> dict[int, int]:
        """The sequence numbers of those of ``uids`` the map knows (by UID)."""
        if self.uids is None:
            return {}
        if len(uids) <= 8:
            found = {uid: self.seq_for(uid) for uid in uids}
            return {uid: seq for uid, seq in found.items() if seq is not None}
        wanted = set(uids)
        return {uid: index + 1 for index, uid in enumerate(self.uids) if uid in wanted}

    @property
    def complete(self) -> bool:
        """True when the map is tracked and every UID in it is known."""
        return self.uids is not None and len(self.uids) == self.exists and 0 not in self.uids


def _hits_a_gap(uids: list[int], vanished: list[tuple[int, int]]) -> bool:
    """Whether a vanished range overlaps the UIDs a run of unknown slots (0) may
    have: strictly between the known UIDs around the run."""
    previous = 0
    index = 0
    while index < len(uids):
        if uids[index]:
            previous = uids[index]
            index += 1
            continue
        end = index
        while end < len(uids) and not uids[end]:
            end += 1
        following = uids[end] if end < len(uids) else 2**32
        if any(low < following and high > previous for low, high in vanished):
            return True
        index = end
    return False
