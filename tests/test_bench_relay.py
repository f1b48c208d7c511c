"""bench/relay.py: its pure helpers, and a smoke run of ``--quick``.

The benchmark's figures are not checked (timings are not asserts); the smoke run only
shows that every setup can be measured and the tables printed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from bench_loader import load_bench

BENCH = Path(__file__).resolve().parent.parent / "bench" / "relay.py"

relay = load_bench("relay")


# -- percentile ---------------------------------------------------------------------------


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(100, 0, -1)]  # 100 .. 1, unsorted on purpose
    assert relay.percentile(values, 50) == 50.0
    assert relay.percentile(values, 99) == 99.0
    assert relay.percentile(values, 100) == 100.0
    assert relay.percentile(values, 0) == 1.0
    assert relay.percentile([7.0], 99) == 7.0
    assert relay.percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert relay.percentile([1.0, 2.0, 3.0, 4.0], 51) == 3.0


@pytest.mark.parametrize(("values", "q"), [([], 50), ([1.0], -1), ([1.0], 101)])
def test_percentile_refuses(values, q) -> None:
    with pytest.raises(ValueError, match="percentile"):
        relay.percentile(values, q)


# -- literal sizes and the response scanner ---------------------------------------------


@pytest.mark.parametrize(
    ("line", "size"),
    [
        (b"* 1 FETCH (UID 4 BODY[] {5242880}\r\n", 5242880),
        (b"* 1 FETCH (BODY[1] {0}\r\n", 0),
        (b"* 1 FETCH (BINARY[1] ~{12}\r\n", 12),
        (b'* LIST () "/" {4+}\r\n', 4),
        (b"* 1 FETCH (BODY[] {12}\n", 12),
        (b"* 1 FETCH (FLAGS (\\Seen))\r\n", None),
        (b"b1 OK done {5}\r\n", 5),  # only the line end counts, as in the protocol
        (b"* OK [ALERT] {x}\r\n", None),
        (b"* OK braces {12} in the middle\r\n", None),
    ],
)
def test_literal_size(line, size) -> None:
    assert relay.literal_size(line) == size


def _stream() -> bytes:
    body = b"b9 OK not a status line\r\n* 5 EXISTS\r\n{3}\r\n" * 3
    return (
        b"* OK greeting\r\n"
        + b"* 1 FETCH (UID 4 BODY[] {%d}\r\n" % len(body)
        + body
        + b" BODY[HEADER] {2}\r\nab)\r\n"
        + b"* 2 FETCH (FLAGS ())\r\n"
        + b"b7 OK Fetch completed.\r\n"
    )


def test_scanner_skips_literal_data() -> None:
    scanner = relay.ResponseScanner()
    stream = _stream()
    assert scanner.feed(stream) == b"b7 OK Fetch completed.\r\n"
    body = b"b9 OK not a status line\r\n* 5 EXISTS\r\n{3}\r\n" * 3
    assert scanner.literal_octets == len(body) + 2
    assert scanner.untagged == 3  # greeting and the two FETCH responses, nothing inside
    assert scanner.idle


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64])
def test_scanner_in_pieces(size) -> None:
    stream = _stream()
    scanner = relay.ResponseScanner()
    found = []
    for start in range(0, len(stream), size):
        tagged = scanner.feed(stream[start : start + size])
        if tagged is not None:
            found.append(tagged)
    assert found == [b"b7 OK Fetch completed.\r\n"]
    assert scanner.untagged == 3
    assert scanner.idle


def test_scanner_reads_a_prefix_of_a_buffer() -> None:
    buf = bytearray(b"b1 OK done\r\nb2 OK not yet read\r\n")
    scanner = relay.ResponseScanner()
    assert scanner.feed(buf, 12) == b"b1 OK done\r\n"
    assert scanner.feed(b"b2 NO") is None
    assert not scanner.idle
    assert scanner.feed(b" later\r\n") == b"b2 NO later\r\n"


def test_cpu_used_counts_only_growth_of_known_and_new_processes() -> None:
    before = {1: 1.0, 2: 5.0}
    after = {1: 1.5, 3: 0.25}  # 2 exited, 3 is new
    assert relay.cpu_used(before, after) == pytest.approx(0.75)


# -- a smoke run --------------------------------------------------------------------------


def test_quick_run_prints_the_tables(dovecot) -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH), "--quick"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    for heading in (
        "Bulk FETCH BODY[] of 5 MiB messages",
        "Round trips in microseconds",
        "Ratios",
        "Targets",
        "Notes",
        "(a) direct to Dovecot, TLS",
        "(b) imapproxy, TLS both legs",
        "(c) imapproxy, TLS client / plain upstream",
    ):
        assert heading in out
    assert ("(d) nginx mail" in out) != ("(d) skipped: nginx mail module not installed" in out)
