"""Coverage-guided fuzzing (atheris/libFuzzer) of what a client controls at
the gateway: the handshake's request target and Authorization header, the
token, and every text frame.

Not part of `make test` (it runs until stopped); `make fuzz` runs it for a
while. A finding is any exception other than the ones the gateway turns
into a 401, an error frame or a close code.

    python fuzz/fuzz_gateway_input.py -max_total_time=300 fuzz/corpus
"""

from __future__ import annotations

import contextlib
import sys

import atheris

with atheris.instrument_imports():
    import jwt
    from parley.gateway.auth import AuthFailed, HandshakeRefused, Verifier, authenticate
    from parley.protocol import FrameLimits, ProtocolError, parse_request

SECRET = "fuzzing-secret-that-is-32-bytes-long"
VERIFIER = Verifier(secret=SECRET)
LIMITS = FrameLimits()
VALID = jwt.encode({"sub": "alice", "exp": 4102444800}, SECRET, algorithm="HS256")


def one_input(data: bytes) -> None:
    # The first byte picks what to fuzz; the rest is the input, as UTF-8 text
    # (what websockets hands the gateway) or raw bytes (a binary frame). Plain
    # slicing keeps seeds readable: fuzz/seeds/* are real frames and tokens.
    if not data:
        return
    choice, rest = data[0] % 4, data[1:]
    text = rest.decode("utf-8", errors="replace")
    if choice == 0:  # a text frame
        with contextlib.suppress(ProtocolError):
            parse_request(text, LIMITS)
    elif choice == 1:  # a binary frame
        with contextlib.suppress(ProtocolError):
            parse_request(rest, LIMITS)
    elif choice == 2:  # a handshake: the request target, then the Authorization header
        target, _, header = text.partition("\n")
        for verifier in (VERIFIER, None):
            try:
                identity = authenticate(target, header or None, verifier)
            except (AuthFailed, HandshakeRefused):
                continue
            assert identity.user, identity
    else:  # a token, alone and spliced onto a valid one
        for candidate in (text, VALID[: len(text) % len(VALID)] + text):
            try:
                identity = VERIFIER.verify(candidate)
            except AuthFailed:
                continue
            # only the right key makes a token; forged ones must not pass
            assert identity.user == "alice", candidate


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
