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
    fdp = atheris.FuzzedDataProvider(data)
    choice = fdp.ConsumeIntInRange(0, 3)
    if choice == 0:  # a text frame
        with contextlib.suppress(ProtocolError):
            parse_request(fdp.ConsumeUnicodeNoSurrogates(fdp.remaining_bytes()), LIMITS)
    elif choice == 1:  # a binary frame
        with contextlib.suppress(ProtocolError):
            parse_request(fdp.ConsumeBytes(fdp.remaining_bytes()), LIMITS)
    elif choice == 2:  # a handshake
        target = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 400))
        header = fdp.ConsumeUnicodeNoSurrogates(fdp.remaining_bytes()) or None
        for verifier in (VERIFIER, None):
            try:
                identity = authenticate(target, header, verifier)
            except (AuthFailed, HandshakeRefused):
                continue
            assert identity.user, identity
    else:  # a token, alone or spliced into a valid one
        token = fdp.ConsumeUnicodeNoSurrogates(fdp.remaining_bytes())
        for candidate in (token, VALID[: len(token) % len(VALID)] + token):
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
