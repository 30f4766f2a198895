"""What the chat app remembers between runs: the last gateway URL and user name.

Stored as JSON in `user_config_dir("parley")/client.json`. The token is never
written to disk: it is a secret and usually short-lived.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from platformdirs import user_config_dir


def default_path() -> Path:
    """Where the settings live (PARLEY_CLIENT_CONFIG overrides, for tests and sandboxes)."""
    override = os.environ.get("PARLEY_CLIENT_CONFIG")
    return Path(override) if override else Path(user_config_dir("parley")) / "client.json"


@dataclass
class Settings:
    """The remembered connection details."""

    url: str = ""
    user: str = ""

    @classmethod
    def load(cls, path: Path | None = None) -> Settings:
        """Read the settings; a missing or damaged file gives empty settings."""
        try:
            data = json.loads((path or default_path()).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return cls()
        if not isinstance(data, dict):
            return cls()
        return cls(url=str(data.get("url", "")), user=str(data.get("user", "")))

    def save(self, path: Path | None = None) -> None:
        """Write the settings, creating the directory; failures are ignored
        because forgetting a URL must never stop anyone from chatting."""
        target = path or default_path()
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(".tmp")
            tmp.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
            tmp.replace(target)
        except OSError:
            pass
