"""The part cache as one client session uses it (docs/cache.md, "Serving").

A FETCH or UID FETCH on the selected mailbox that a ``cache`` rule covers goes
one of two ways:

* **answered from the cache** (:meth:`SessionCache.serve`) when every item asked
  is cacheable (or UID, or FLAGS) and every message's entries are there. The
  session first lets the commands in flight finish (responses stay in order and
  sequence numbers stable), makes sure its sequence-to-UID map is complete (a
  ``UID SEARCH RETURN (ALL) ALL`` of its own when not), and then writes the FETCH
  responses itself. When the server must be asked anyway -- a body item without
  PEEK in a read-write mailbox sets ``\\Seen`` (``UID STORE +FLAGS (\\Seen)``), or
  FLAGS were asked (``UID FETCH (UID FLAGS)``) -- that small command goes first
  and its FETCH responses reach the client as the server sent them. Nothing else
  goes upstream: the message data does not.
* **relayed** otherwise, as always; its responses are read on the way
  (:meth:`SessionCache.capture`, also for responses whose literal streams) and
  their cacheable items stored once fetched often enough (``admit_after``).

Entries are keyed by upstream, owner (the user; nobody for a mailbox a rule marks
``shared``), mailbox (the upstream's name), UIDVALIDITY, UID and item, so a
UIDVALIDITY change never serves old data; the session also drops the mailbox's
entries when it sees one.
"""

from __future__ import annotations

import contextlib
import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import trio

from imapproxy.cache import CacheKey, PartCache
from imapproxy.fetchcache import (
    Plan,
    StreamCapture,
    category,
    item_bytes,
    plan,
    response_name,
    stored_form,
)
from imapproxy.logs import get_logger
from imapproxy.rules import CachePolicy
from imapproxy.upstream import Request, UpstreamError
from imapproxy.wire import Response, SequenceSet
from imapproxy.wire.commands import CommandArgs, FetchArgs, NoArgs, SearchArgs, StoreArgs
from imapproxy.wire.framing import FramePart, LiteralChunk
from imapproxy.wire.reader import Atom, ParseError
from imapproxy.wire.responses import EsearchData, FetchData, NamespaceData, SearchData
from imapproxy.wire.search import SearchKey
from imapproxy.wire.values import FetchItem, Mailbox

if TYPE_CHECKING:
    from imapproxy.mailbox import SelectedMailbox
    from imapproxy.session import ClientSession

__all__ = ["Fill", "Merge", "Partial", "SessionCache"]

log = get_logger("imapproxy.cache")

#: How much of a streamed response is collected to be stored, past the policy's
#: largest entry (the response's other items and framing).
_CAPTURE_SLACK = 64 * 1024
#: What the server's answers to the proxy's own flag commands may hold.
_OWN_ITEMS = frozenset({"UID", "FLAGS", "MODSEQ"})
SEEN = b"\\Seen"
#: The largest mailbox whose UIDs are asked with a plain ``UID SEARCH ALL`` (one
#: response line of them all) when the server has no ESEARCH.
_PLAIN_SEARCH_MAX = 100_000
#: The item a response part ends with the literal of (``BODY[2] {2097152}``).
_ANNOUNCED = re.compile(
    rb"(?P<item>(?:BODY|BINARY)\[[^\]]*\]|RFC822(?:\.TEXT|\.HEADER)?)(?P<partial><[0-9]+>)?"
    rb" ~?\{(?P<size>[0-9]+)\}\r\n$",
    re.IGNORECASE,
)
#: The entries RFC822 items are stored under (as FetchItem.key names them).
_RFC822_KEYS = {
    b"RFC822": b"BODY[]",
    b"RFC822.TEXT": b"BODY[TEXT]",
    b"RFC822.HEADER": b"BODY[HEADER]",
}
_UID_ITEM = re.compile(rb"[( ]UID ([0-9]+)")
#: Keys a session keeps built (about 200 bytes each).
_KEY_MEMO = 50_000
#: The longest message set the proxy writes into a command of its own (servers
#: limit lines: Dovecot to 64 KiB).
_MAX_SET = 8192
#: The most UIDs of a UID FETCH looked up before the session knows the mailbox.
_LOOK_MAX = 10_000
#: Octets of admitted entries gathered before they are stored (else: at the end
#: of the FETCH).
_BATCH = 4 * 1024 * 1024


@dataclass(slots=True)
class Merge:
    """For a FETCH partly answered from the cache: the cached items to add to the
    server's response for each UID, and the item keys its answers carry."""

    add: dict[int, bytes]
    expect: frozenset[bytes]


@dataclass(frozen=True, slots=True)
class Partial:
    """A FETCH partly answered from the cache: the UID FETCH to relay instead of
    the client's command, and what to add to its responses."""

    args: FetchArgs
    merge: Merge
    #: The command sent: UID FETCH, or FETCH for a client's FETCH.
    name: str = "UID FETCH"


@dataclass(slots=True)
class Fill:
    """A relayed FETCH whose responses are read to fill the cache."""

    policy: CachePolicy
    upstream: str
    owner: str
    mailbox: str
    uidvalidity: int
    stream: StreamCapture | None = field(default=None, repr=False)
    #: Entries admitted and not yet stored, and their size.
    batch: list[tuple[CacheKey, bytes]] = field(default_factory=list, repr=False)
    batched: int = 0


class SessionCache:
    """The cache side of one :class:`~imapproxy.session.ClientSession`."""

    def __init__(self, session: ClientSession, cache: PartCache) -> None:
        self.session = session
        self.cache = cache
        #: Where entries are stored in the background: the proxy's, so that a
        #: session ending does not cut a store short.
        self.nursery: trio.Nursery | None = session.proxy.background
        self._storing = 0
        #: Octets of responses written from the cache (for the audit line).
        self.served = 0
        self._stored = trio.Event()
        #: FETCH FLAGS the server sent to the proxy's own commands, held for the
        #: responses from the cache.
        self._own: list[Response] = []
        #: Keys already built for the mailbox :meth:`key` last built keys for.
        self._keys_of: tuple[str, str, str, int] | None = None
        self._key_memo: dict[tuple[int, bytes], CacheKey] = {}
        #: Responses being collected (their octets count against the proxy's budget).
        self._streams: set[StreamCapture] = set()
        #: Prefixes of the server's other-users and shared namespaces (None: not
        #: asked yet).
        self._shared_prefixes: tuple[str, ...] | None = None

    # -- keys ---------------------------------------------------------------------

    def fill_for(self, policy: CachePolicy) -> Fill | None:
        """The key parts of the selected mailbox under ``policy`` (None: no
        mailbox, or its UIDVALIDITY is unknown)."""
        session = self.session
        mailbox = session.mailbox
        upstream = session.upstream
        if mailbox is None or not mailbox.uidvalidity or upstream is None:
            return None  # 0 is "unknown" (QUIRKS G5): never a key
        name = session.selected_name()
        shared = policy.shared and any(
            name.startswith(prefix) for prefix in self._shared_prefixes or ()
        )
        owner = "" if shared else session.rule_user()
        # The responses of relayed FETCHes teach the map (UID for sequence number).
        mailbox.track_uids()
        return Fill(policy, upstream.config.name, owner, name, mailbox.uidvalidity)

    def key(self, fill: Fill, uid: int, item: bytes) -> CacheKey:
        """The entry of ``item`` of message ``uid`` (keys of the mailbox the session
        has open are kept: a warm FETCH of many messages builds none)."""
        where = (fill.upstream, fill.owner, fill.mailbox, fill.uidvalidity)
        if where != self._keys_of:
            self._keys_of, self._key_memo = where, {}
        memo = self._key_memo
        key = memo.get((uid, item))
        if key is None:
            if len(memo) >= _KEY_MEMO:
                memo.clear()
            key = memo[uid, item] = CacheKey(
                upstream=fill.upstream,
                owner=fill.owner,
                mailbox=fill.mailbox,
                uidvalidity=fill.uidvalidity,
                uid=uid,
                item=item,
            )
        return key

    def _keys(self, fill: Fill, messages: list[tuple[int, int]], the_plan: Plan) -> list[CacheKey]:
        """The entries a plan needs, message by message."""
        return [
            self.key(fill, uid, entry) for _seq, uid in messages for _i, entry in the_plan.cached
        ]

    async def check_validity(self, fill: Fill) -> None:
        """Drop the mailbox's entries when its UIDVALIDITY changed since the proxy
        last saw it (older entries are never served anyway: the key has it)."""
        seen = self.session.proxy.cache_validity
        where = (fill.upstream, fill.owner, fill.mailbox)
        known = seen.get(where)
        if known == fill.uidvalidity:
            return
        seen[where] = fill.uidvalidity
        if known is not None:
            await self.cache.drop_mailbox(*where)

    # -- answering from the cache ---------------------------------------------------

    async def serve(
        self, tag: bytes, name: str, args: FetchArgs, policy: CachePolicy
    ) -> str | Partial:
        """Answer a FETCH from the cache if it can be: "hit" when it was; a
        :class:`Partial` when some entries are there (the caller relays its
        command instead of the client's and merges); "miss" otherwise (the caller
        relays the client's command)."""
        if policy.shared and self._shared_prefixes is None:
            await self._learn_namespaces()  # before anything is keyed
        the_plan = plan(args, uid=name.startswith("UID "), policy=policy)
        if the_plan is None:
            return "miss"
        session = self.session
        upstream = session.upstream
        assert upstream is not None
        uid = name.startswith("UID ")
        while self._storing:  # what this session's last FETCH brought is in first
            await self._stored.wait()
        # A first look: when the cache has nothing for this FETCH, it is relayed at
        # once -- no waiting for the commands in flight (a pipelining client keeps
        # its pipeline) and no map to build (a cold fetch costs no round trip).
        looked_at = session.mailbox
        early = await self._look(the_plan, policy, args, uid=uid)
        if early is not None and not early[3]:
            return "miss"
        if upstream.oldest is not None:
            if early is None:
                return "miss"  # which messages is unclear until they finish
            while upstream.oldest is not None:  # in order, with stable numbers
                await upstream.oldest.done.wait()
        mailbox = session.mailbox
        fill = self.fill_for(policy)
        if mailbox is None or fill is None:
            return "miss"
        await self.check_validity(fill)
        if early is not None and mailbox is looked_at and early[0] == mailbox.numbering >= 0:
            numbering, messages, keys, found = early  # nothing came or went meanwhile
        else:
            known = _messages(mailbox, args.sequence_set, uid=uid)
            if known is None and not uid:
                # The map cannot say, and a UID SEARCH now could bring an EXPUNGE
                # into the client's sequence-number FETCH (RFC 9051 section 7.5.1):
                # relay it with UID added, which teaches the map.
                return self._teaching(args)
            if known is None:  # the map cannot say: ask the server for it
                if not await self._learn_uids(mailbox):
                    return "miss"
                known = _messages(mailbox, args.sequence_set, uid=uid)
            if not known:
                return "miss"  # out of range, or nothing: the server says what it says
            messages = known
            numbering = mailbox.numbering
            keys = self._keys(fill, messages, the_plan)
            found = await self.cache.get_many(keys)
        if session.mailbox is not mailbox or mailbox.numbering != numbering:
            return "miss"  # messages came or went meanwhile: the server answers
        if len(found) < len(set(keys)):  # an entry may serve two items
            return await self._partial(the_plan, fill, mailbox, messages, found, uid=uid)
        flags = await self._ask_server(the_plan, mailbox, messages, uid=uid)
        if flags is None or session.mailbox is not mailbox or mailbox.numbering != numbering:
            self._release_own()  # what the server said of the flags: to the client
            return "miss"  # messages came or went meanwhile: the server answers
        self._own.clear()  # in the responses written now
        self._write(the_plan, messages, keys, found, flags)
        session.tagged(tag, "OK", "Fetch completed (from the cache)")
        return "hit"

    @staticmethod
    def _teaching(args: FetchArgs) -> Partial:
        """The client's sequence-number FETCH relayed with UID among its items."""
        if any(item.name == "UID" for item in args.items):
            items = args.items
        else:
            items = (FetchItem("UID"), *args.items)
        return Partial(replace(args, items=items, macro=None), Merge({}, frozenset()), "FETCH")

    async def _learn_namespaces(self) -> None:
        """The prefixes of the server's other-users and shared namespaces: only a
        mailbox under one may be cached for everyone (a rule's ``shared``)."""
        upstream = self.session.upstream
        assert upstream is not None
        prefixes: list[str] = []
        caps = {cap.upper() for cap in upstream.capabilities}
        if caps & {"NAMESPACE", "IMAP4REV2"}:
            try:
                request: Request | None = await upstream.command("NAMESPACE", NoArgs())
            except UpstreamError:
                request = None
            for response in request.untagged if request is not None else ():
                with contextlib.suppress(ParseError):
                    data = response.data
                    if isinstance(data, NamespaceData):
                        for group in (data.other, data.shared):
                            prefixes += [_text(desc.prefix) for desc in group or ()]
        self._shared_prefixes = tuple(prefix for prefix in prefixes if prefix)

    async def _look(
        self, the_plan: Plan, policy: CachePolicy, args: FetchArgs, *, uid: bool
    ) -> tuple[int, list[tuple[int, int]], list[CacheKey], dict[CacheKey, bytes]] | None:
        """What the cache has for a FETCH by the mailbox as the session knows it
        now: (numbering, messages, their keys, entries found); None when it cannot
        say which messages, or there are none. A UID FETCH of listed UIDs the map does not
        know yet is looked up by UID alone: sequence numbers 0, numbering -1 (the
        messages are to be looked up again)."""
        mailbox = self.session.mailbox
        fill = self.fill_for(policy)
        if mailbox is None or fill is None:
            return None
        numbering = mailbox.numbering
        messages = _messages(mailbox, args.sequence_set, uid=uid)
        if messages is None and uid and (listed := _listed_uids(args.sequence_set)):
            numbering, messages = -1, [(0, u) for u in listed]
        if not messages:
            return None
        keys = self._keys(fill, messages, the_plan)
        return numbering, messages, keys, await self.cache.get_many(keys)

    async def _partial(
        self,
        the_plan: Plan,
        fill: Fill,
        mailbox: SelectedMailbox,
        messages: list[tuple[int, int]],
        found: dict[CacheKey, bytes],
        *,
        uid: bool,
    ) -> str | Partial:
        """Some entries are cached: the server is asked, in one FETCH (UID FETCH
        for the client's UID FETCH, FETCH by sequence number for its FETCH), for
        the items missing for any message (and FLAGS), for the messages that lack
        one (all of them when FLAGS were asked); the cached items are added to its
        responses. Messages it is not asked about are written now."""
        lacking = {
            u
            for _seq, u in messages
            if any(self.key(fill, u, entry) not in found for _item, entry in the_plan.cached)
        }
        missing = [
            (item, entry)
            for item, entry in the_plan.cached
            if any(self.key(fill, u, entry) not in found for u in lacking)
        ]
        if not lacking or (len(lacking) == len(messages) and len(missing) == len(the_plan.cached)):
            return "miss"  # nothing to add: the client's command as it is
        asked = {u for _seq, u in messages} if the_plan.flags else lacking
        targets = sorted(asked) if uid else [seq for seq, u in messages if u in asked]
        where = SequenceSet.from_numbers(targets)
        if len(bytes(where)) > _MAX_SET:
            return "miss"  # scattered messages: the client's own command is shorter
        flags: dict[int, bytes] = {}
        if the_plan.sets_seen and not mailbox.readonly:
            # \Seen for every message, also those answered from the cache alone.
            seen = Plan(the_plan.cached, the_plan.uid, flags=False, sets_seen=True)
            numbering = mailbox.numbering
            reported = await self._ask_server(seen, mailbox, messages, uid=uid)
            if (
                reported is None
                or self.session.mailbox is not mailbox
                or mailbox.numbering != numbering
            ):
                self._release_own()
                return "miss"
            self._own.clear()
            flags = reported
        items = [FetchItem("UID")]
        if the_plan.flags:
            items.append(FetchItem("FLAGS"))
        # As the client asked them: a body item without PEEK sets \Seen again, which
        # changes nothing (and RFC822 keeps its name in the response).
        items += [item for item, _entry in missing]
        kept = [(item, entry) for item, entry in the_plan.cached if (item, entry) not in missing]
        add: dict[int, bytes] = {}
        local = []
        for seq, u in messages:
            if u not in asked:
                local.append((seq, u))
                continue
            parts = [item_bytes(item, found[self.key(fill, u, entry)]) for item, entry in kept]
            if u in flags and not the_plan.flags:
                parts.insert(0, flags[u])  # \Seen set: the server would say so
            self.cache.stats.bytes_saved += sum(map(len, parts))
            add[u] = b" ".join(parts)
        # The messages the server is not asked about have every item cached.
        plain = Plan(the_plan.cached, the_plan.uid, False, False)
        self._write(plain, local, self._keys(fill, local, plain), found, flags)
        upstream_args = FetchArgs(where, tuple(items))
        expect = frozenset(item.key for item in items[1:])
        return Partial(upstream_args, Merge(add, expect), "UID FETCH" if uid else "FETCH")

    def merged(self, merge: Merge, raw: bytes, response: Response) -> bytes:
        """A server's FETCH response (or the last part of one) with the cached
        items of its message added before its closing parenthesis."""
        if not raw.endswith(b")\r\n"):
            return raw
        try:
            data = response.data
        except ParseError:
            return raw
        if not isinstance(data, FetchData) or data.uid is None:
            return raw
        if not any(item.key in merge.expect for item, _value in data.items):
            return raw  # an update about the message, not an answer
        extra = merge.add.pop(data.uid, None)
        if not extra:
            return raw
        return raw[:-3] + b" " + extra + b")\r\n"

    async def _ask_server(
        self,
        the_plan: Plan,
        mailbox: SelectedMailbox,
        messages: list[tuple[int, int]],
        *,
        uid: bool,
    ) -> dict[int, bytes] | None:
        """What only the server knows: ``\\Seen`` set by a body fetch without PEEK
        (not in a read-only mailbox), and FLAGS. Returns the FLAGS item the server
        reported per UID (to go into the cached responses; other FETCH responses
        it sends meanwhile are passed on); None when the server refused.

        The commands name the messages as the client did: by sequence number for a
        FETCH, so that the server cannot send an EXPUNGE in the middle of it (RFC
        9051 section 7.5.1)."""
        store = the_plan.sets_seen and not mailbox.readonly
        if not store and not the_plan.flags:
            return {}  # nothing to ask
        upstream = self.session.upstream
        assert upstream is not None
        prefix = "UID " if uid else ""
        targets = SequenceSet.from_numbers(u if uid else seq for seq, u in messages)
        commands: list[tuple[str, CommandArgs]] = []
        if store:
            silent = the_plan.flags  # the FETCH below says the flags
            commands.append((prefix + "STORE", StoreArgs(targets, "+", "FLAGS", silent, (SEEN,))))
        if the_plan.flags:
            items = (FetchItem("UID"), FetchItem("FLAGS"))
            commands.append((prefix + "FETCH", FetchArgs(targets, items)))
        wanted = {u for _seq, u in messages}
        flags: dict[int, bytes] = {}
        for name, args in commands:
            try:
                request = await upstream.command(name, args, collect_fetch=True)
            except UpstreamError:
                return None
            # In the order the server sent them: an EXPUNGE before a FETCH changes
            # the numbers that FETCH means.
            for response in request.untagged:
                if self._own_flags(response, mailbox, wanted, flags):
                    self._own.append(response)
                else:
                    self.session.relay_untagged(response)
            if request.status != "OK":
                return None
        return flags

    def _release_own(self) -> None:
        """The FLAGS the server reported to the proxy's own commands, passed on to
        the client after all (the FETCH goes to the server after all)."""
        own, self._own = self._own, []
        for response in own:
            self.session.relay_untagged(response)

    @staticmethod
    def _own_flags(
        response: Response, mailbox: SelectedMailbox, wanted: set[int], flags: dict[int, bytes]
    ) -> bool:
        """Take the FLAGS of a FETCH response about one of ``wanted``; False when it
        is something else (for the client as it is)."""
        try:
            data = response.data
        except ParseError:
            return False
        if not isinstance(data, FetchData) or data.flags is None:
            return False
        u = data.uid if data.uid is not None else mailbox.uid_for(data.number)
        if u not in wanted or any(item.name not in _OWN_ITEMS for item, _ in data.items):
            return False
        flags[u] = b"FLAGS (" + b" ".join(data.flags) + b")"
        return True

    async def _learn_uids(self, mailbox: SelectedMailbox) -> bool:
        """Fill the selected mailbox's sequence-to-UID map from the server: ``UID
        SEARCH RETURN (ALL) ALL`` (ESEARCH, compact), or ``UID SEARCH ALL`` for a
        server without it, up to :data:`_PLAIN_SEARCH_MAX` messages (one line of
        all the UIDs)."""
        upstream = self.session.upstream
        assert upstream is not None
        caps = {cap.upper() for cap in upstream.capabilities}
        esearch = bool(caps & {"ESEARCH", "IMAP4REV2"})
        if not esearch and mailbox.exists > _PLAIN_SEARCH_MAX:
            return False
        options = (("ALL", ()),) if esearch else None
        # An EXPUNGE or EXISTS the server sends with its answer would be applied to
        # the old map: then the answer is already out of date.
        numbering = mailbox.numbering
        try:
            request = await upstream.command(
                "UID SEARCH", SearchArgs(SearchKey("ALL"), None, options)
            )
        except UpstreamError:
            return False
        if request.status != "OK":
            return False
        uids: list[int] = []
        for response in request.untagged:
            try:
                data = response.data
            except ParseError:
                return False
            if isinstance(data, SearchData) and response.name == "SEARCH":
                uids.extend(data.numbers)
            elif isinstance(data, EsearchData):
                for key, value in data.results:
                    found = _uid_set(value) if key == "ALL" else ()
                    if found is None:
                        return False
                    for low, high in found:
                        uids.extend(range(low, high + 1))
        if (
            self.session.mailbox is not mailbox
            or mailbox.numbering != numbering
            or len(uids) != mailbox.exists
        ):
            return False  # changed meanwhile, or an answer that does not add up
        mailbox.learn_uids(uids)
        return mailbox.complete

    def _write(
        self,
        the_plan: Plan,
        messages: list[tuple[int, int]],
        keys: list[CacheKey],
        found: dict[CacheKey, bytes],
        flags: dict[int, bytes] | None = None,
    ) -> None:
        """The FETCH responses of ``messages``, every item from its entry (``keys``:
        the entries, message by message, item by item), with the FLAGS the server
        reported (``flags``, by UID) after the UID."""
        session = self.session
        names = [(item, response_name(item)) for item, _entry in the_plan.cached]
        entries = iter(keys)
        lines = []
        for seq, uid in messages:
            items = [b"UID %d" % uid] if the_plan.uid else []
            if flags and uid in flags:
                items.append(flags[uid])
            for item, name in names:
                items.append(item_bytes(item, found[next(entries)], name))
            lines.append(b"* %d FETCH (" % seq + b" ".join(items) + b")\r\n")
        data = session.client_flags(b"".join(lines))
        session.write(data)
        self.cache.stats.bytes_saved += len(data)
        self.served += len(data)

    # -- filling from relayed responses ---------------------------------------------

    def capture(self, fill: Fill, response: Response) -> None:
        """Store the cacheable items of a relayed FETCH response (admitted ones)."""
        try:
            data = response.data
        except ParseError:
            return
        if not isinstance(data, FetchData):
            return
        uid = data.uid
        mailbox = self.session.mailbox
        if uid is None and mailbox is not None:
            uid = mailbox.uid_for(data.number)
        if uid is None:
            return
        policy = fill.policy
        for item, value in data.items:
            kind = category(item)
            if kind is None or kind not in policy.items:
                continue
            # Stored as any client may read it: UTF-8 strings only as literals.
            stored = stored_form(item, value, utf8=False)
            if stored is None or not policy.min_size <= len(stored) - 1 <= policy.max_size:
                continue
            key = self.key(fill, uid, item.key)
            if self.cache.admit(key, after=policy.admit_after, window=policy.window):
                fill.batch.append((key, stored))
                fill.batched += len(stored)
        if fill.batched >= _BATCH:
            self.finish(fill)

    def capture_part(self, fill: Fill, part: FramePart | LiteralChunk) -> None:
        """A piece of a relayed response whose literal streams: collected, then
        stored like :meth:`capture` once whole (unless too large to be cached)."""
        if fill.stream is None:
            budget = self.session.proxy.capture_budget
            fill.stream = StreamCapture(fill.policy.max_size + _CAPTURE_SLACK, budget)
            self._streams.add(fill.stream)
            if isinstance(part, FramePart) and not self._worth_copying(fill, part):
                fill.stream.abandoned = True  # not stored anyway: no copy
        stream = fill.stream
        response = stream.add(part)
        if isinstance(part, FramePart) and part.literal is None:
            fill.stream = None
            self._streams.discard(stream)
        if response is not None:
            self.capture(fill, response)

    def _worth_copying(self, fill: Fill, part: FramePart) -> bool:
        """Whether the large item a response part announces would be stored: not
        a partial, its size within the policy, and this fetch of it admitted (the
        fetch is counted here; a second count when it is stored changes nothing).
        Unknown: yes."""
        match = _ANNOUNCED.search(part.raw)
        if match is None:
            return True
        size = int(match.group("size"))
        if match.group("partial") or not fill.policy.min_size <= size <= fill.policy.max_size:
            return True  # not this item; another of the response may be
        uid_match = _UID_ITEM.search(part.raw)
        if uid_match is None:
            return True
        item = match.group("item").upper()
        item = _RFC822_KEYS.get(item, item)
        key = self.key(fill, int(uid_match.group(1)), item)
        policy = fill.policy
        return self.cache.admit(key, after=policy.admit_after, window=policy.window)

    def close(self) -> None:
        """The session ended: responses still being collected are dropped."""
        for stream in self._streams:
            stream.release()
        self._streams.clear()

    def finish(self, fill: Fill) -> None:
        """Store what ``fill`` collected (at the end of its FETCH, or when a batch
        is large), in the background: one call per tier for the lot."""
        batch, fill.batch, fill.batched = fill.batch, [], 0
        if not batch or self.nursery is None:
            return
        if not self._storing:
            self._stored = trio.Event()
        self._storing += 1
        self.nursery.start_soon(self._put, batch, fill.policy.ttl)

    async def _put(self, batch: list[tuple[CacheKey, bytes]], ttl: float | None) -> None:
        try:
            await self.cache.put_many(batch, ttl=ttl)
        finally:
            self._storing -= 1
            if not self._storing:
                self._stored.set()


def _listed_uids(where: SequenceSet) -> list[int] | None:
    """The UIDs a set names without ``*`` or ``$``, up to :data:`_LOOK_MAX`."""
    if where.saved or any(first is None or last is None for first, last in where.ranges):
        return None
    uids: list[int] = []
    for low, high in where.bounds(0):
        if len(uids) + high - low + 1 > _LOOK_MAX:
            return None
        uids.extend(range(low, high + 1))
    return uids


def _text(raw: bytes) -> str:
    """A namespace prefix as text (modified UTF-7 decoded when it is valid)."""
    try:
        return Mailbox(raw).decode()
    except ValueError:
        return raw.decode("utf-8", "replace")


def _uid_set(value: object) -> list[tuple[int, int]] | None:
    """The ranges of an ESEARCH ``ALL`` result; None when it is not a set."""
    text = value.value if isinstance(value, Atom) else value
    if not isinstance(text, bytes):
        return None
    try:
        return SequenceSet.parse(text).bounds(2**32 - 1)
    except ValueError:
        return None


def _messages(
    mailbox: SelectedMailbox, where: SequenceSet, *, uid: bool
) -> list[tuple[int, int]] | None:
    """(sequence number, UID) of the messages ``where`` names; empty when a
    sequence number is out of range (the server answers that). With the map
    incomplete, a UID FETCH of listed UIDs the map knows is answered from it;
    otherwise None: the map must be asked for."""
    uids = mailbox.uids
    if where.saved:
        return []
    if not mailbox.complete:
        if not uid:  # the numbers the map knows a UID for
            if uids is None or len(uids) != mailbox.exists:
                return None
            found: list[tuple[int, int]] = []
            for low, high in where.bounds(len(uids)):
                if low < 1 or high > len(uids):
                    return []
                if len(found) + high - low + 1 > _LOOK_MAX or 0 in uids[low - 1 : high]:
                    return None
                found += [(seq, uids[seq - 1]) for seq in range(low, high + 1)]
            return found
        listed = _listed_uids(where)
        if listed is None:
            return None
        seqs = mailbox.seqs_for(listed)
        if len(seqs) < len(listed):
            return None
        return sorted((seq, u) for u, seq in seqs.items())
    if not uids:
        return []
    out: list[tuple[int, int]] = []
    if uid:
        for low, high in where.bounds(uids[-1]):
            start, stop = bisect_left(uids, low), bisect_right(uids, high)
            out.extend((index + 1, uids[index]) for index in range(start, stop))
        out.sort()
        return out
    count = len(uids)
    for low, high in where.bounds(count):
        if high > count or low < 1:
            return []
        out.extend((seq, uids[seq - 1]) for seq in range(low, high + 1))
    out.sort()
    return out
