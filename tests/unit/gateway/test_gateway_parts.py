"""Small gateway parts: token bucket, backoff, delivery clock, auth, frame bytes."""

from __future__ import annotations

import jwt
import pytest
from parley.gateway.auth import AuthFailed, HandshakeRefused, Verifier, authenticate
from parley.gateway.backoff import INITIAL_SECONDS, MAX_SECONDS, Backoff
from parley.gateway.latency import MAX_WAITING, DeliveryClock
from parley.gateway.ratelimit import TokenBucket
from parley.gateway.wire import text_frame
from parley.observability.metrics import DELIVERY_LATENCY
from websockets.frames import Frame, Opcode


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    """A full bucket allows `burst` frames at once, then `rate` per second."""
    bucket = TokenBucket(rate=10.0, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.take(0.05)
    assert bucket.take(0.1)
    assert not bucket.take(0.1)
    assert bucket.take(10.0)
    assert bucket.full


def test_backoff_doubles_to_a_cap_with_jitter() -> None:
    """Delays start near 50 ms, double, stay at most 1 s, and reset."""
    backoff = Backoff()
    delays = [backoff.next() for _ in range(10)]
    assert INITIAL_SECONDS * 0.8 <= delays[0] <= INITIAL_SECONDS
    assert all(d <= MAX_SECONDS for d in delays)
    assert delays[-1] >= MAX_SECONDS * 0.8
    backoff.reset()
    assert backoff.next() <= INITIAL_SECONDS


def _observations() -> float:
    return sum(
        s.value for m in DELIVERY_LATENCY.collect() for s in m.samples if s.name.endswith("_count")
    )


def test_delivery_clock_observes_once_per_acked_send() -> None:
    """An acked send is observed when fanned out (or at once if the feed was first)."""
    clock = DeliveryClock()
    before = _observations()
    clock.acked("r", 1, received=0.0, fanned_out=False)
    clock.delivered("r", 2)
    assert _observations() == before
    clock.delivered("r", 1)
    clock.delivered("r", 1)
    assert _observations() == before + 1
    clock.acked("r", 3, received=0.0, fanned_out=True)
    assert _observations() == before + 2


def test_delivery_clock_is_bounded() -> None:
    """Sends never fanned out here are forgotten beyond MAX_WAITING."""
    clock = DeliveryClock()
    for seq in range(MAX_WAITING + 10):
        clock.acked("r", seq, received=0.0, fanned_out=False)
    assert len(clock._waiting) == MAX_WAITING
    clock.forget_room("r")
    assert not clock._waiting


@pytest.mark.parametrize(
    ("target", "refusal"),
    [("/ws", "bad_user"), ("/ws?user=", "bad_user"), ("/x?user=alice", 404),
     ("/ws/?user=alice", 404), ("/ws?user=alice%0A", "bad_user"),
     ("/ws?user=" + "a" * 33, "bad_user")],
)  # fmt: skip
def test_authenticate_refusals(target: str, refusal: int | str) -> None:
    """With auth off: wrong paths are 404, missing or invalid users refused."""
    with pytest.raises((HandshakeRefused, AuthFailed)) as info:
        authenticate(target, None, None)
    if isinstance(refusal, int):
        assert isinstance(info.value, HandshakeRefused) and info.value.status == refusal
    else:
        assert isinstance(info.value, AuthFailed) and info.value.reason == refusal


def test_authenticate_user_and_token() -> None:
    """?user= names the user with auth off; the token's sub with auth on."""
    assert authenticate("/ws?user=alice&x=1", None, None).user == "alice"
    secret = "k" * 32
    verifier = Verifier(secret=secret)
    token = jwt.encode({"sub": "bob"}, secret, algorithm="HS256")
    assert authenticate(f"/ws?token={token}&user=alice", None, verifier).user == "bob"
    with pytest.raises(AuthFailed) as refused:
        authenticate("/ws?user=alice", None, verifier)
    assert refused.value.reason == "missing_token"


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_text_frame_matches_websockets(size: int) -> None:
    """Our prebuilt frames are byte for byte what websockets would send."""
    payload = b"x" * size
    expected = Frame(Opcode.TEXT, payload).serialize(mask=False, extensions=[])
    assert text_frame(payload) == expected
