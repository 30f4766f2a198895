"""Regenerate services/parley/_generated from proto/ (run via `make proto`).

protoc writes modules that import each other as `parley.v1.*`; our package is
also called `parley`, so the imports are rewritten to point into
`parley._generated`. The descriptors keep their `parley/v1/*.proto` names, so
reflection and wire compatibility are unaffected.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
OUT = ROOT / "services" / "parley" / "_generated"
IMPORT = re.compile(r"^from parley\.v1 import (\w+)", re.MULTILINE)
DOTTED = re.compile(r"\bparley\.v1\.(\w+_pb2)\b")


def generate(out: Path) -> None:
    """Write the generated package for every proto under proto/ into out."""
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        bin_dir = Path(sys.executable).parent
        args = [
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            # mypy-protobuf's stubs type the messages and the gRPC stubs and
            # servicers, so the services type-check under mypy --strict
            f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
            f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
            f"--python_out={tmp}",
            f"--mypy_out={tmp}",
            f"--grpc_python_out={tmp}",
            f"--mypy_grpc_out={tmp}",
            *protos,
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        out.mkdir(parents=True, exist_ok=True)
        for old in out.glob("*_pb2*.py*"):
            old.unlink()
        for src in sorted(Path(tmp).rglob("*.py*")):
            text = IMPORT.sub(r"from parley._generated import \1", src.read_text())
            text = DOTTED.sub(r"parley._generated.\1", text)
            (out / src.name).write_text(text)
    init = out / "__init__.py"
    init.write_text('"""Generated protobuf and gRPC modules; regenerate with `make proto`."""\n')


def main() -> None:
    """Generate into the package, or into the directory given as argv[1]."""
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT
    if target.exists() and target != OUT:
        shutil.rmtree(target)
    generate(target)


if __name__ == "__main__":
    main()
