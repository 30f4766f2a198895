"""Make tests/ importable so test modules can `from support... import ...`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
