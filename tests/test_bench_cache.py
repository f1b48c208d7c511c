"""bench/cache.py: the throttling relay's schedule (pure, nothing sleeps), and a smoke
run of ``--quick``.

The benchmark's figures are not checked (timings are not asserts), nor whether each
warm fetch was a cache hit (the proxy's business, which the run reports); the smoke run
only shows that it runs and prints its table. Its exit status does say something: the
script fails when a second fetch brings another amount of message data than the first.
"""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest
from bench_loader import load_bench

BENCH = Path(__file__).resolve().parent.parent / "bench" / "cache.py"


bench = load_bench("cache")

RATE = 1000.0  # octets per second: easy arithmetic
DELAY = 0.5
BURST = 100


def link():
    return bench.Link(RATE, DELAY, BURST)


# -- the link's schedule ------------------------------------------------------------------


def test_an_idle_link_delivers_a_slice_after_the_delay() -> None:
    assert link().schedule(10.0, BURST) == pytest.approx(10.5)


def test_a_backlog_leaves_at_the_rate() -> None:
    line = link()
    times = [line.schedule(0.0, BURST) for _ in range(5)]
    # The first slice uses the full bucket; each next one waits for BURST / RATE.
    assert times == pytest.approx([0.5, 0.6, 0.7, 0.8, 0.9])


def test_slices_slower_than_the_rate_keep_their_own_latency() -> None:
    line = link()
    arrivals = [0.0, 0.2, 0.4, 1.0]  # 50 octets every 0.2 s: a quarter of the rate
    assert [line.schedule(t, 50) for t in arrivals] == pytest.approx([t + DELAY for t in arrivals])


def test_small_slices_pass_unpaced_until_the_bucket_is_empty() -> None:
    line = link()
    times = [line.schedule(0.0, 25) for _ in range(6)]
    # 100 octets of tokens: four slices at once, then one per 25 / RATE.
    assert times == pytest.approx([0.5, 0.5, 0.5, 0.5, 0.525, 0.55])


def test_idling_fills_the_bucket_no_further_than_its_size() -> None:
    line = link()
    line.schedule(0.0, BURST)
    times = [line.schedule(100.0, BURST) for _ in range(3)]
    assert times == pytest.approx([100.5, 100.6, 100.7])


def test_a_slice_taken_up_late_does_not_start_a_burst() -> None:
    line = link()
    assert line.schedule(0.0, BURST, now=0.0) == pytest.approx(0.5)
    # The writer was held up until 3.0: the slices that arrived at 0 go from then,
    # still one per BURST / RATE after the first.
    later = [line.schedule(0.0, BURST, now=3.0 + 0.1 * i) for i in range(3)]
    assert later == pytest.approx([3.0, 3.1, 3.2])


def test_any_schedule_keeps_order_latency_and_rate() -> None:
    rng = random.Random(7)
    line = link()
    arrival = 0.0
    slices = []
    for _ in range(2000):
        arrival += rng.choice([0.0, 0.0, 0.01, 0.05, 0.3, 2.0])
        size = rng.randint(1, BURST)
        slices.append((arrival, size, line.schedule(arrival, size)))
    delivered = [at for _, _, at in slices]
    assert delivered == sorted(delivered)
    assert all(at >= t + DELAY - 1e-9 for t, _, at in slices)
    # Whatever the window, at most a bucket's worth more than the rate allows.
    for i in range(0, len(slices), 37):
        octets = 0
        for j in range(i, min(i + 200, len(slices))):
            octets += slices[j][1]
            window = slices[j][2] - slices[i][2]
            assert octets <= BURST + RATE * window + 1e-6, (i, j)


@pytest.mark.parametrize("size", [0, BURST + 1])
def test_a_slice_must_fit_the_bucket(size) -> None:
    with pytest.raises(ValueError, match="slice"):
        link().schedule(0.0, size)


@pytest.mark.parametrize(("rate", "delay", "burst"), [(0, 0.1, 10), (1.0, -1, 10), (1.0, 0, 0)])
def test_a_link_refuses_impossible_settings(rate, delay, burst) -> None:
    with pytest.raises(ValueError, match="link"):
        bench.Link(rate, delay, burst)


def test_slices_cut_data_in_order() -> None:
    data = bytes(range(256)) * 4
    pieces = bench.slices(data, 300)
    assert [len(p) for p in pieces] == [300, 300, 300, 124]
    assert b"".join(pieces) == data
    assert bench.slices(b"", 300) == []


# -- the mail -----------------------------------------------------------------------------


def test_the_attachment_part_is_two_megabytes_on_the_wire() -> None:
    message = bench.attachment_message(random.Random(1))
    _preamble, text, attachment, end = message.split(b"--=_bench_boundary_4711")
    assert end == b"--\n"
    assert b"text/plain" in text
    headers, body = attachment.split(b"\n\n", 1)
    assert b"Content-Transfer-Encoding: base64" in headers
    # The line end before the boundary belongs to the boundary: BODY[2] ends without it.
    wire = body[:-1].replace(b"\n", b"\r\n")
    assert bench.ATTACHMENT_OCTETS - 78 < len(wire) <= bench.ATTACHMENT_OCTETS
    assert len(wire) == 2_097_106  # as the benchmark's Commands lines say


# -- a smoke run --------------------------------------------------------------------------


def test_quick_run_prints_the_table(dovecot) -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
    out = result.stdout
    for line in (
        "Part cache benchmark: imapproxy over a slow link to Dovecot (--quick run, 2 rounds)",
        "50 ms round trip), 20 Mbit/s each way",
        "Times in ms, median of 2 rounds",
        "cold/warm (>= 20x)",
        "cold/off (<= 1.05x)",
        "2 MB attachment ",
        "500-message header listing ",
        "500-message header listing + FLAGS ",
        "imapproxy CPU per fetch in ms",
        "Targets (issue 5)",
        "2 MB attachment: warm >= 20x faster than cold: ",
        "500-message header listing: warm >= 20x faster than cold: ",
        "Cache proxy audit log: cold fetches ",
        " of 6 misses, warm fetches ",
        "UID FETCH 1 (BODY.PEEK[2]) in Attachment",
    ):
        assert line in out
