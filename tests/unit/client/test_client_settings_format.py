"""Settings persistence, prefill rules and the plain-text formats."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from parley.client.app import DEFAULT_URL, initial_details
from parley.client.events import Entry
from parley.client.format import entry_line, rooms_table, valid_room, valid_user
from parley.client.screens.rooms import ago
from parley.client.settings import Settings


def test_settings_round_trip(tmp_path: Path) -> None:
    """Saved URL and user load back; the file is JSON in the given place."""
    path = tmp_path / "deep" / "client.json"
    Settings(url="ws://h:1/ws", user="alice").save(path)
    assert Settings.load(path) == Settings(url="ws://h:1/ws", user="alice")


def test_damaged_settings_load_empty(tmp_path: Path) -> None:
    """A missing or corrupt file gives empty settings instead of an error."""
    assert Settings.load(tmp_path / "missing.json") == Settings()
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert Settings.load(bad) == Settings()


def test_explicit_values_win_and_defaults_defer_to_last_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A chosen URL/user is kept; the CLI's defaults are replaced by remembered ones."""
    monkeypatch.setenv("USER", "root")
    monkeypatch.delenv("PARLEY_USER", raising=False)
    saved = Settings(url="ws://saved:1/ws", user="alice")
    assert initial_details(DEFAULT_URL, "root", saved) == ("ws://saved:1/ws", "alice")
    assert initial_details("ws://other:2/ws", "bob", saved) == ("ws://other:2/ws", "bob")
    assert initial_details(DEFAULT_URL, "root", Settings()) == (DEFAULT_URL, "root")


def test_names_follow_the_protocol() -> None:
    """Room and user names match §5 (users at most 32 characters)."""
    assert valid_room("general") and valid_room("a-b_9")
    assert not valid_room("General") and not valid_room("-x") and not valid_room("")
    assert valid_user("a" * 32) and not valid_user("a" * 33)


def test_entry_lines() -> None:
    """Messages and presence entries render as one line each."""
    ts = "2026-01-02T03:04:05Z"
    msg = Entry("r", 7, {"type": "message", "seq": 7, "from": "bob", "text": "a\nb", "ts": ts})
    join = Entry("r", 8, {"type": "presence", "seq": 8, "user": "eve", "event": "join"})
    assert entry_line(msg).startswith("[7] ") and entry_line(msg).endswith(" bob: a ⏎ b")
    assert entry_line(join) == "[8] --:--:-- * eve joined"


def test_edits_unsends_and_reactions_have_lines_of_their_own() -> None:
    def entry(seq: int, **frame: object) -> Entry:
        return Entry("r", seq, {"seq": seq, "target": 7, **frame})

    edit = entry(9, type="edit", **{"from": "bob"}, text="new")
    assert (edit.kind, edit.target) == ("edit", 7)
    assert entry_line(edit) == "[9] --:--:-- * bob edited #7: new"
    assert entry_line(entry(10, type="unsent", by="ann")) == "[10] --:--:-- * ann unsent #7"
    on = entry(11, type="reaction", **{"from": "bob"}, emoji="👍", on=True)
    off = entry(12, type="reaction", **{"from": "bob"}, emoji="👍", on=False)
    assert entry_line(on) == "[11] --:--:-- * bob reacted 👍 to #7"
    assert entry_line(off) == "[12] --:--:-- * bob took back 👍 on #7"
    folded = Entry(
        "r", 7, {"type": "message", "seq": 7, "from": "bob", "text": "new", "edited": True}
    )
    assert entry_line(folded).endswith("bob: new (edited)")


def test_rooms_table_is_aligned() -> None:
    """Columns line up whatever the widths."""
    table = rooms_table(
        [
            {"room": "b", "owner": "x", "members": 10, "last_seq": 5, "administrator": "node-1"},
            {"room": "aaaa", "owner": "y", "members": 1, "last_seq": 0, "administrator": ""},
        ]
    ).splitlines()
    assert table[1].startswith("aaaa  y ")
    assert table[1].index("1") == table[2].index("10") == table[0].index("MEMBERS")


def test_relative_times() -> None:
    """ago() gives short relative times."""
    now = datetime(2026, 1, 1, 12, 0, 0)
    assert ago(now - timedelta(seconds=5), now) == "just now"
    assert ago(now - timedelta(minutes=5), now) == "5m ago"
    assert ago(now - timedelta(hours=3), now) == "3h ago"
    assert ago(now - timedelta(days=2), now) == "2d ago"
    assert ago(None) == ""
