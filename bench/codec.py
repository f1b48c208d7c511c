"""Codec benchmark: framing throughput and small-response parse rates.

Run: ``make bench`` (or ``.venv/bin/python bench/codec.py [--quick]``).

Prints, for the sans-IO codec alone (no sockets):

1. framing throughput (framing only: no parsing, no socket) over a stream of
   ``* n FETCH (UID n BODY[] {size} ...)`` responses fed in 64 KiB reads, in MB/s
   of stream, with the ratio to a single memory copy of the same stream (the
   floor any relay pays): 1 MiB literals, which stream as views of the reads,
   and 30 KiB literals, which are copied once into their frame;
2. small FETCH responses per second, head only (framing + tag/number/name);
3. the same, fully parsed (every item typed).

Targets (issue #2, 2-core machine): >= 1 GB/s framed, >= 200k/s head-only,
>= 30k/s fully parsed. Each line says whether its target is met.
"""

from __future__ import annotations

import argparse
import functools
import gc
import time
from collections.abc import Callable

from imapproxy.wire import NEED_DATA, Frame, FramePart, Framer, LiteralChunk, Response, Role

READ_SIZE = 64 * 1024


def _chunks(stream: bytes) -> list[bytes]:
    """The stream as the separate bytes objects socket reads would return."""
    return [stream[i : i + READ_SIZE] for i in range(0, len(stream), READ_SIZE)]


def _best_of(runs: int, fn: Callable[[], int]) -> tuple[float, int]:
    best = float("inf")
    result = 0
    for _ in range(runs):
        gc.collect()
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def literal_stream(messages: int, size: int) -> bytes:
    body = (b"x" * 75 + b"\r\n") * (size // 77) + b"y" * (size % 77)
    parts = []
    for n in range(1, messages + 1):
        parts.append(b"* %d FETCH (UID %d BODY[] {%d}\r\n" % (n, n + 1000, len(body)))
        parts.append(body)
        parts.append(b" FLAGS (\\Seen))\r\n")
    parts.append(b"a1 OK Fetch completed.\r\n")
    return b"".join(parts)


def frame_stream(chunks: list[bytes]) -> int:
    """Frame the stream; returns the octets delivered (frames and chunks)."""
    framer = Framer(Role.CLIENT)
    delivered = 0
    for chunk in chunks:
        framer.receive_data(chunk)
        while True:
            event = framer.next_event()
            if event is NEED_DATA:
                break
            if isinstance(event, LiteralChunk):
                delivered += len(event.data)
            elif isinstance(event, Frame | FramePart):
                delivered += len(event.raw)
    return delivered


def copy_stream(chunks: list[bytes]) -> int:
    """Baseline: one copy of every read into a buffer, as the least a relay does."""
    buf = bytearray()
    for chunk in chunks:
        buf += chunk
    return len(buf)


SMALL = (
    b"* %d FETCH (UID %d FLAGS (\\Seen \\Answered) RFC822.SIZE %d "
    b'INTERNALDATE "17-Jul-2024 02:44:25 -0700" MODSEQ (%d))\r\n'
)


def small_stream(count: int) -> bytes:
    return b"".join(SMALL % (n, n + 4000, 1000 + n, 90000 + n) for n in range(1, count + 1))


def parse_small(chunks: list[bytes], *, full: bool) -> int:
    framer = Framer(Role.CLIENT)
    parsed = 0
    for chunk in chunks:
        framer.receive_data(chunk)
        while True:
            event = framer.next_event()
            if event is NEED_DATA:
                break
            assert isinstance(event, Frame)
            response = Response.parse(event)
            if full:
                response.data  # noqa: B018 - the parse is what is measured
            parsed += 1
    return parsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller inputs, one run")
    args = parser.parse_args()
    runs = 1 if args.quick else 5
    messages = 16 if args.quick else 128

    # Large literals stream as views of the reads; 30 KiB ones (under the 64 KiB
    # inline threshold) are buffered and copied once into their frame.
    for size, count, label in (
        (1024 * 1024, messages, "1 MiB literals (streamed)"),
        (30 * 1024, messages * 34, "30 KiB literals (inline)"),
    ):
        stream = literal_stream(count, size)
        chunks = _chunks(stream)
        framed_s, _ = _best_of(runs, functools.partial(frame_stream, chunks))
        copy_s, _ = _best_of(runs, functools.partial(copy_stream, chunks))
        mbps = len(stream) / framed_s / 1e6
        print(
            f"framing only, {label} in 64 KiB reads: {mbps:,.0f} MB/s "
            f"({len(stream) / 2**20:.0f} MiB; {copy_s / framed_s:.2f}x the speed of one "
            f"memory copy of the stream) target >= 1000 MB/s: "
            f"{'met' if mbps >= 1000 else 'MISSED'}"
        )

    count = 20_000 if args.quick else 200_000
    small = _chunks(small_stream(count))
    head_s, parsed = _best_of(runs, lambda: parse_small(small, full=False))
    rate = parsed / head_s
    print(
        f"small FETCH responses, head only: {rate:,.0f}/s "
        f"target >= 200,000/s: {'met' if rate >= 200_000 else 'MISSED'}"
    )
    full_s, parsed = _best_of(runs, lambda: parse_small(small, full=True))
    rate = parsed / full_s
    print(
        f"small FETCH responses, fully parsed: {rate:,.0f}/s "
        f"target >= 30,000/s: {'met' if rate >= 30_000 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
