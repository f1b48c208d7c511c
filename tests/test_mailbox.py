"""The selected-mailbox model: what SELECT and the untagged responses that follow
it tell (EXISTS, EXPUNGE, FETCH UID, VANISHED, FLAGS, OK [codes]), the
sequence-to-UID map, and that malformed data only costs precision.

Responses are made the way the session makes them: real response bytes through
the client-role framer, then :meth:`Response.parse`. A Hypothesis state machine
drives the map against a plain list of UIDs.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from imapproxy.mailbox import SelectedMailbox
from imapproxy.wire import NEED_DATA, Frame, Framer, Mailbox, ParseError, Response, Role


def response(wire: bytes) -> Response:
    """The one response that ``wire`` (a whole response, CRLF included) frames to."""
    framer = Framer(Role.CLIENT)
    framer.receive_data(wire)
    frame = framer.next_event()
    assert isinstance(frame, Frame), frame
    assert frame.raw == wire
    assert framer.next_event() is NEED_DATA
    return Response.parse(frame)


def feed(mailbox: SelectedMailbox, transcript: bytes) -> SelectedMailbox:
    """Apply every ``S:`` line of a transcript (one response per line, no literals)."""
    for line in transcript.splitlines():
        line = line.strip()
        if line:
            assert line.startswith(b"S: "), line
            mailbox.apply(response(line[3:] + b"\r\n"))
    return mailbox


def selected(*, readonly: bool = False, exists: int = 0, **fields: Any) -> SelectedMailbox:
    return SelectedMailbox(Mailbox(b"INBOX"), readonly, exists, **fields)


def tracked(uids: list[int]) -> SelectedMailbox:
    """A mailbox whose map is ``uids`` (0: not known yet), exists = len(uids)."""
    mailbox = selected(exists=len(uids))
    mailbox.track_uids()
    assert mailbox.uids is not None
    mailbox.uids[:] = uids
    return mailbox


# -- SELECT ------------------------------------------------------------------------

DOVECOT_SELECT = rb"""
S: * FLAGS (\Answered \Flagged \Deleted \Seen \Draft $Forwarded)
S: * OK [PERMANENTFLAGS (\Answered \Flagged \Deleted \Seen \Draft $Forwarded \*)] Flags permitted.
S: * 3 EXISTS
S: * 0 RECENT
S: * OK [UNSEEN 2] First unseen.
S: * OK [UIDVALIDITY 1700000000] UIDs valid
S: * OK [UIDNEXT 8] Predicted next UID
S: * OK [HIGHESTMODSEQ 42] Highest
S: a1 OK [READ-WRITE] Select completed (0.001 + 0.000 secs).
"""


def test_select_transcript_fills_the_model() -> None:
    mailbox = feed(selected(), DOVECOT_SELECT)
    assert mailbox.exists == 3
    assert mailbox.uidvalidity == 1700000000
    assert mailbox.uidnext == 8
    assert mailbox.highestmodseq == 42
    assert mailbox.flags == (
        b"\\Answered",
        b"\\Flagged",
        b"\\Deleted",
        b"\\Seen",
        b"\\Draft",
        b"$Forwarded",
    )
    assert mailbox.permanentflags == (*mailbox.flags, b"\\*")
    assert mailbox.uids is None
    assert repr(mailbox) == (
        "SelectedMailbox(b'INBOX', read-write, exists=3, uidvalidity=1700000000, uidnext=8)"
    )


def test_read_only_select() -> None:
    mailbox = feed(
        selected(),
        b"""
        S: * 2 EXISTS
        S: * OK [UIDVALIDITY 5] x
        S: a1 OK [READ-ONLY] Select completed.
        """,
    )
    assert mailbox.readonly
    assert repr(mailbox) == (
        "SelectedMailbox(b'INBOX', read-only, exists=2, uidvalidity=5, uidnext=None)"
    )
    feed(mailbox, b"S: a2 OK [READ-WRITE] now writable")
    assert not mailbox.readonly


def test_repr_counts_tracked_uids() -> None:
    mailbox = tracked([3, 0, 9])
    assert repr(mailbox) == (
        "SelectedMailbox(b'INBOX', read-write, exists=3, uidvalidity=None, uidnext=None, 3 uids)"
    )


# -- one response at a time ----------------------------------------------------------

#: (wire, field, value after applying it to ``selected(exists=5)``).
UPDATES = [
    (b"* 7 EXISTS\r\n", "exists", 7),
    (b"* 0 EXISTS\r\n", "exists", 0),
    (b"* 3 EXISTS\r\n", "exists", 3),
    (b"* 1 EXPUNGE\r\n", "exists", 4),
    (b"* 5 EXPUNGE\r\n", "exists", 4),
    (b"* OK [UIDVALIDITY 3857529045] UIDs valid\r\n", "uidvalidity", 3857529045),
    (b"* OK [UIDNEXT 4392] Predicted next UID\r\n", "uidnext", 4392),
    (b"* OK [HIGHESTMODSEQ 715194045007] Highest\r\n", "highestmodseq", 715194045007),
    (b"a1 OK [UIDNEXT 9] tagged codes count too\r\n", "uidnext", 9),
    (b"* NO [UIDNEXT 9] so do NO ones\r\n", "uidnext", 9),
    (b"* OK [READ-ONLY] x\r\n", "readonly", True),
    (b"* FLAGS (\\Seen $Junk)\r\n", "flags", (b"\\Seen", b"$Junk")),
    (b"* FLAGS ()\r\n", "flags", ()),
    (b"* OK [PERMANENTFLAGS ()] No permanent flags\r\n", "permanentflags", ()),
    (b"* OK [PERMANENTFLAGS (\\Deleted \\*)] x\r\n", "permanentflags", (b"\\Deleted", b"\\*")),
    # Without the map, VANISHED can only count (one message per UID).
    (b"* VANISHED 2,4\r\n", "exists", 3),
    (b"* VANISHED 1:3\r\n", "exists", 2),
    (b"* VANISHED 1:100\r\n", "exists", 0),
]


@pytest.mark.parametrize(("wire", "name", "value"), UPDATES)
def test_apply_updates_one_field(wire: bytes, name: str, value: object) -> None:
    mailbox = selected(exists=5)
    before = copy.deepcopy(mailbox)
    mailbox.apply(response(wire))
    assert getattr(mailbox, name) == value
    setattr(before, name, value)
    assert mailbox == before  # nothing else changed


#: Responses that must leave ``selected(exists=5)`` and a tracked map exactly as
#: they were: malformed data, impossible numbers, and responses the model ignores.
IGNORED = [
    b"* EXPUNGE\r\n",
    b"* 0 EXPUNGE\r\n",
    b"* 6 EXPUNGE\r\n",
    b"* EXISTS\r\n",
    b"* FLAGS garbage\r\n",
    b"* FLAGS (\\Seen\r\n",
    b"* OK [UIDNEXT abc] x\r\n",
    b"* OK [UIDNEXT] x\r\n",
    b"* OK [UIDVALIDITY 1 2] x\r\n",
    b"* OK [HIGHESTMODSEQ -1] x\r\n",
    b"* OK [PERMANENTFLAGS garbage] x\r\n",
    b"* OK [UNSEEN 2] codes the model does not keep\r\n",
    b"* OK [ALERT] x\r\n",
    b"* OK no code at all\r\n",
    b"* OK\r\n",
    b"* BAD [READ-ONLY] BAD codes are not mailbox state\r\n",
    b"* BYE [UIDNEXT 3] going away\r\n",
    b"* VANISHED (EARLIER) 1:3\r\n",
    b"* VANISHED garbage\r\n",
    b"* VANISHED\r\n",
    b"* 3 FETCH garbage\r\n",
    b"* 3 FETCH (UID abc)\r\n",
    b"* 3 FETCH (FLAGS (\\Seen))\r\n",
    b"* 5 RECENT\r\n",
    b"* SEARCH 1 2 3\r\n",
    b"* CAPABILITY IMAP4rev1\r\n",
    b'* LIST () "/" INBOX\r\n',
    b"+ continue\r\n",
    b"a1 NO [TRYCREATE] x\r\n",
]


@pytest.mark.parametrize("wire", IGNORED)
@pytest.mark.parametrize("track", [False, True], ids=["untracked", "tracked"])
def test_apply_ignores(wire: bytes, track: bool) -> None:
    mailbox = tracked([1, 2, 0, 7, 9]) if track else selected(exists=5)
    before = copy.deepcopy(mailbox)
    mailbox.apply(response(wire))
    assert mailbox == before


def test_fetch_without_the_map_is_not_read() -> None:
    mailbox = selected(exists=2, uidnext=5)
    before = copy.deepcopy(mailbox)
    mailbox.apply(response(b"* 2 FETCH (UID 10)\r\n"))
    mailbox.apply(response(b"* 9 FETCH (UID 11)\r\n"))
    assert mailbox == before


# -- the sequence-to-UID map ---------------------------------------------------------


def test_untracked_map_knows_nothing() -> None:
    mailbox = selected(exists=3)
    assert mailbox.uid_for(1) is None
    assert mailbox.seq_for(1) is None
    assert not mailbox.complete


def test_track_uids_starts_unknown_and_keeps_an_existing_map() -> None:
    mailbox = selected(exists=3)
    mailbox.track_uids()
    assert mailbox.uids == [0, 0, 0]
    assert [mailbox.uid_for(n) for n in (0, 1, 2, 3, 4)] == [None] * 5
    assert not mailbox.complete
    mailbox.apply(response(b"* 2 FETCH (UID 20)\r\n"))
    mailbox.track_uids()  # again: the map stays
    assert mailbox.uids == [0, 20, 0]


def test_learn_uids_sorts_and_sets_exists() -> None:
    mailbox = selected(exists=2)
    mailbox.learn_uids([9, 3, 4])
    assert mailbox.uids == [3, 4, 9]
    assert mailbox.exists == 3
    assert mailbox.complete
    assert [mailbox.uid_for(n) for n in (1, 2, 3)] == [3, 4, 9]
    assert [mailbox.seq_for(u) for u in (3, 4, 9)] == [1, 2, 3]
    assert [mailbox.seq_for(u) for u in (0, 1, 5, 10)] == [None] * 4
    mailbox.learn_uids([])
    assert mailbox.exists == 0
    assert mailbox.complete
    assert mailbox.seq_for(3) is None


def test_fetch_teaches_uids_and_moves_uidnext() -> None:
    mailbox = tracked([0, 0, 0])
    mailbox.uidnext = 8
    mailbox.apply(response(b"* 2 FETCH (FLAGS (\\Seen) UID 5)\r\n"))
    assert mailbox.uids == [0, 5, 0]
    assert mailbox.uidnext == 8
    mailbox.apply(response(b"* 3 FETCH (UID 8 MODSEQ (12))\r\n"))
    assert mailbox.uids == [0, 5, 8]
    assert mailbox.uidnext == 9
    mailbox.apply(response(b"* 1 FETCH (UID 2 BODY[] {5}\r\nhello)\r\n"))
    assert mailbox.uids == [2, 5, 8]
    assert mailbox.complete


def test_fetch_beyond_exists_grows_the_map() -> None:
    """Lenient: a FETCH for a message the EXISTS count has not announced yet."""
    mailbox = tracked([4])
    mailbox.apply(response(b"* 3 FETCH (UID 9)\r\n"))
    assert mailbox.uids == [4, 0, 9]
    assert mailbox.exists == 3
    assert mailbox.seq_for(9) == 3


def test_exists_and_expunge_move_the_map() -> None:
    mailbox = tracked([3, 5, 7])
    mailbox.apply(response(b"* 5 EXISTS\r\n"))
    assert mailbox.uids == [3, 5, 7, 0, 0]
    assert not mailbox.complete
    mailbox.apply(response(b"* 2 EXPUNGE\r\n"))
    assert mailbox.uids == [3, 7, 0, 0]
    assert mailbox.exists == 4
    assert mailbox.seq_for(7) == 2
    assert mailbox.seq_for(5) is None
    mailbox.apply(response(b"* 2 EXISTS\r\n"))  # a server that shrinks without EXPUNGE
    assert mailbox.uids == [3, 7]
    assert mailbox.exists == 2
    assert mailbox.complete


def test_vanished_removes_by_uid() -> None:
    mailbox = tracked([3, 5, 7, 0, 12])
    mailbox.apply(response(b"* VANISHED 4:5,12\r\n"))
    assert mailbox.uids == [3, 7, 0]
    assert mailbox.exists == 3
    mailbox.apply(response(b"* VANISHED 7:*\r\n"))  # "*": the largest UID in use
    assert mailbox.uids == [3, 0]
    mailbox.apply(response(b"* VANISHED (EARLIER) 3\r\n"))  # a QRESYNC report, not news
    assert mailbox.uids == [3, 0]


def test_seq_for_with_and_without_gaps() -> None:
    mailbox = tracked([2, 0, 6, 0, 11])
    assert [mailbox.seq_for(u) for u in (2, 6, 11)] == [1, 3, 5]
    assert mailbox.seq_for(5) is None
    mailbox.learn_uids([2, 6, 11])
    assert [mailbox.seq_for(u) for u in (1, 2, 5, 6, 11, 12)] == [None, 1, None, 2, 3, None]


def test_seq_for_uid_zero_is_never_a_message() -> None:
    """0 marks an unknown UID in the map; no message has UID 0 (nz-number)."""
    mailbox = tracked([2, 0, 6])
    assert mailbox.seq_for(0) is None
    mailbox.learn_uids([2, 6])
    assert mailbox.seq_for(0) is None


# -- properties --------------------------------------------------------------------


class MapMachine(RuleBasedStateMachine):
    """EXISTS growth, EXPUNGE n, FETCH n (UID u) and VANISHED of known UIDs, checked
    against the server's truth: a list of UIDs in sequence order."""

    def __init__(self) -> None:
        super().__init__()
        self.truth: list[int] = []
        self.next_uid = 1
        self.mailbox = selected()

    def _new_uids(self, count: int, gaps: list[int]) -> list[int]:
        uids = []
        for gap in gaps[:count] + [0] * (count - len(gaps)):
            self.next_uid += gap  # UIDs ascend, with holes of earlier expunges
            uids.append(self.next_uid)
            self.next_uid += 1
        return uids

    @initialize(
        exists=st.integers(0, 8),
        gaps=st.lists(st.integers(0, 3), max_size=8),
        learn=st.booleans(),
    )
    def select(self, exists: int, gaps: list[int], learn: bool) -> None:
        self.truth = self._new_uids(exists, gaps)
        self.mailbox.apply(response(b"* %d EXISTS\r\n" % exists))
        self.mailbox.apply(response(b"* OK [UIDNEXT %d] x\r\n" % self.next_uid))
        if learn:
            self.mailbox.learn_uids(list(reversed(self.truth)))
        else:
            self.mailbox.track_uids()

    @rule(count=st.integers(0, 4), gaps=st.lists(st.integers(0, 3), max_size=4))
    def exists(self, count: int, gaps: list[int]) -> None:
        self.truth += self._new_uids(count, gaps)
        self.mailbox.apply(response(b"* %d EXISTS\r\n" % len(self.truth)))

    @precondition(lambda self: self.truth)
    @rule(data=st.data())
    def expunge(self, data: st.DataObject) -> None:
        seq = data.draw(st.integers(1, len(self.truth)), label="seq")
        del self.truth[seq - 1]
        self.mailbox.apply(response(b"* %d EXPUNGE\r\n" % seq))

    @precondition(lambda self: self.truth)
    @rule(data=st.data())
    def fetch(self, data: st.DataObject) -> None:
        seq = data.draw(st.integers(1, len(self.truth)), label="seq")
        wire = b"* %d FETCH (FLAGS () UID %d)\r\n" % (seq, self.truth[seq - 1])
        self.mailbox.apply(response(wire))

    @rule(data=st.data())
    def vanished(self, data: st.DataObject) -> None:
        known = [u for n, u in enumerate(self.truth, 1) if self.mailbox.uid_for(n) == u]
        if not known:
            return
        gone = data.draw(st.lists(st.sampled_from(known), min_size=1, unique=True), label="uids")
        self.truth = [u for u in self.truth if u not in gone]
        self.mailbox.apply(response(b"* VANISHED %s\r\n" % b",".join(b"%d" % u for u in gone)))

    @invariant()
    def agrees_with_truth(self) -> None:
        mailbox = self.mailbox
        assert mailbox.exists == len(self.truth)
        assert mailbox.uids is not None
        assert len(mailbox.uids) == len(self.truth)
        known = 0
        for seq, uid in enumerate(self.truth, 1):
            learned = mailbox.uid_for(seq)
            assert learned in (None, uid)
            if learned is not None:
                known += 1
                assert mailbox.seq_for(learned) == seq
        assert mailbox.complete == (known == len(self.truth))
        assert mailbox.uid_for(0) is None
        assert mailbox.uid_for(len(self.truth) + 1) is None
        assert mailbox.seq_for(0) is None
        assert mailbox.seq_for(self.next_uid) is None


TestMapMachine = MapMachine.TestCase
TestMapMachine.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)


_NAMES = st.sampled_from(
    [b"EXISTS", b"EXPUNGE", b"FETCH", b"VANISHED", b"FLAGS", b"OK", b"NO", b"RECENT"]
)
_TEXT = st.binary(max_size=40).map(lambda b: b.replace(b"\r", b" ").replace(b"\n", b" "))
_CODES = st.sampled_from(
    [b"UIDVALIDITY", b"UIDNEXT", b"HIGHESTMODSEQ", b"READ-ONLY", b"PERMANENTFLAGS", b"X"]
)


@st.composite
def _lines(draw: st.DrawFn) -> bytes:
    """Untagged responses the model reads, with arbitrary (mostly broken) data."""
    name = draw(_NAMES)
    number = draw(st.none() | st.integers(0, 20))
    head = b"* " + (b"%d " % number if number is not None else b"") + name
    if name in (b"OK", b"NO") and draw(st.booleans()):
        return head + b" [" + draw(_CODES) + b" " + draw(_TEXT).replace(b"]", b"") + b"] x\r\n"
    return head + b" " + draw(_TEXT) + b"\r\n"


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(_lines(), max_size=10), track=st.booleans())
def test_arbitrary_data_never_raises_and_keeps_the_map_consistent(
    lines: list[bytes], track: bool
) -> None:
    mailbox = tracked([1, 0, 5]) if track else selected(exists=3)
    for wire in lines:
        framer = Framer(Role.CLIENT)
        framer.receive_data(wire)
        frame = framer.next_event()
        if not isinstance(frame, Frame):
            continue
        try:
            parsed = Response.parse(frame)
        except ParseError:
            continue
        mailbox.apply(parsed)
        assert mailbox.exists >= 0
        if track and mailbox.uids is not None:  # given up when it cannot be kept
            assert len(mailbox.uids) == mailbox.exists


def test_a_huge_count_drops_the_map_instead_of_allocating_it() -> None:
    from imapproxy.mailbox import MAX_TRACKED, SelectedMailbox
    from imapproxy.wire import Framer, Mailbox, Response, Role

    def response(data: bytes) -> Response:
        framer = Framer(Role.CLIENT)
        framer.receive_data(data)
        frame = framer.next_event()
        return Response.parse(frame)  # type: ignore[arg-type]

    mailbox = SelectedMailbox(Mailbox(b"INBOX"), readonly=False, exists=2)
    mailbox.track_uids()
    mailbox.apply(response(b"* %d EXISTS\r\n" % (MAX_TRACKED + 1)))
    assert mailbox.uids is None
    assert mailbox.exists == MAX_TRACKED + 1
    mailbox.track_uids()  # still too large to track
    assert mailbox.uids is None

    small = SelectedMailbox(Mailbox(b"INBOX"), readonly=False, exists=1)
    small.track_uids()
    small.apply(response(b"* %d FETCH (UID 7)\r\n" % (MAX_TRACKED + 1)))
    assert small.uids is None


def test_vanished_with_a_saved_result_reference_is_ignored() -> None:
    # "$" is meaningless from a server; it must not raise out of the model.
    from imapproxy.mailbox import SelectedMailbox
    from imapproxy.wire import Framer, Mailbox, Response, Role

    framer = Framer(Role.CLIENT)
    framer.receive_data(b"* VANISHED $\r\n")
    response = Response.parse(framer.next_event())  # type: ignore[arg-type]
    for track in (False, True):
        mailbox = SelectedMailbox(Mailbox(b"INBOX"), readonly=False, exists=3)
        if track:
            mailbox.learn_uids([1, 2, 3])
        mailbox.apply(response)
        assert mailbox.exists == 3


def test_numbering_counts_changes_of_the_message_numbers() -> None:
    mailbox = selected(exists=5)
    for wire in (b"* 5 EXISTS\r\n", b"* 1 FETCH (FLAGS ())\r\n", b"* OK [UIDNEXT 9] x\r\n"):
        mailbox.apply(response(wire))
    assert mailbox.numbering == 0  # nothing came or went
    for wire in (b"* 6 EXISTS\r\n", b"* 2 EXPUNGE\r\n", b"* VANISHED 3\r\n"):
        mailbox.apply(response(wire))
    assert mailbox.numbering == 3


def test_seqs_for_knows_what_the_map_learned() -> None:
    mailbox = selected(exists=20)
    mailbox.track_uids()
    for seq, uid in ((3, 30), (7, 70), (15, 150)):
        mailbox.apply(response(b"* %d FETCH (UID %d FLAGS ())\r\n" % (seq, uid)))
    assert mailbox.seqs_for([70, 30, 99]) == {70: 7, 30: 3}
    many = list(range(1, 200))
    assert mailbox.seqs_for(many) == {30: 3, 70: 7, 150: 15}
    mailbox.apply(response(b"* 4 EXPUNGE\r\n"))
    assert mailbox.seqs_for([70, 150]) == {70: 6, 150: 14}


def test_a_vanished_uid_the_map_does_not_know_gives_the_map_up() -> None:
    mailbox = selected(exists=4)
    mailbox.track_uids()
    mailbox.apply(response(b"* 4 FETCH (UID 40 FLAGS ())\r\n"))
    mailbox.apply(response(b"* VANISHED 20\r\n"))  # one of the unknown slots
    assert mailbox.uids is None  # which one cannot be told
    assert mailbox.exists == 3


def test_hits_a_gap() -> None:
    from imapproxy.mailbox import _hits_a_gap

    uids = [3, 7, 0, 0, 20, 0]
    assert _hits_a_gap(uids, [(8, 8)])  # between 7 and 20: may be a slot
    assert _hits_a_gap(uids, [(25, 30)])  # after 20: the last slot
    assert not _hits_a_gap(uids, [(4, 6)])  # between 3 and 7: no slot there
    assert not _hits_a_gap(uids, [(20, 20)])  # a known UID
    assert not _hits_a_gap([1, 2, 3], [(5, 9)])
