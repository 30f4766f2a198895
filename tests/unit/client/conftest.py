"""Fixtures for client unit tests: a §5 gateway double on 127.0.0.1:0."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from client_gateway_double import GatewayDouble


@pytest.fixture
async def gateway() -> AsyncIterator[GatewayDouble]:
    """A running gateway double, stopped after the test."""
    double = GatewayDouble()
    await double.start()
    try:
        yield double
    finally:
        await double.stop()
