"""The room-move metrics exist from start-up, so dashboards and alerts see zeros, not gaps."""

from __future__ import annotations

from parley.observability import metrics
from prometheus_client import generate_latest


def test_move_series_exist_at_zero_before_any_move() -> None:
    assert metrics.TWOPC is not None  # imported: the metrics are registered
    text = generate_latest().decode()
    for line in (
        'parley_twopc_total{outcome="committed"}',
        'parley_twopc_total{outcome="aborted"}',
        "parley_room_moves_in_flight ",
        "parley_rooms_under_replicated ",
        "parley_twopc_duration_seconds_count ",
    ):
        assert line in text, line
