"""When the client asks for a fresh token, and what it reads from a token file."""

from __future__ import annotations

from pathlib import Path

import jwt
from parley.client.tokens import expires_at, file_source, refresh_delay


def test_refresh_comes_before_expiry() -> None:
    # an hour left: refresh with a fifth of it to spare
    assert refresh_delay(3600.0, now=0.0) == 2880.0
    # half a minute left: at least ten seconds to spare
    assert refresh_delay(30.0, now=0.0) == 20.0
    # nearly expired (or past): now
    assert refresh_delay(5.0, now=0.0) == 0.0
    assert refresh_delay(-5.0, now=0.0) == 0.0


def test_expiry_is_read_without_the_key() -> None:
    token = jwt.encode({"sub": "a", "exp": 1234567890}, "k" * 32, algorithm="HS256")
    assert expires_at(token) == 1234567890.0
    assert expires_at(jwt.encode({"sub": "a"}, "k" * 32, algorithm="HS256")) is None
    assert expires_at("not a token") is None
    assert expires_at("") is None


def test_file_source_reads_each_time(tmp_path: Path) -> None:
    path = tmp_path / "token"
    source = file_source(str(path))
    assert source() == ""  # not there yet
    path.write_text("  first\n")
    assert source() == "first"
    path.write_text("second")
    assert source() == "second"
