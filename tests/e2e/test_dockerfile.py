"""What can be checked of the image without a Docker engine: it is built and started the way
the README and the tests build and start the service."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
README = (ROOT / "README.md").read_text()


def instructions(name: str) -> list[str]:
    return [
        line.split(None, 1)[1]
        for line in DOCKERFILE.replace("\\\n", " ").splitlines()
        if line.split(None, 1)[:1] == [name]
    ]


def test_multi_stage_slim_image_running_as_non_root() -> None:
    bases = instructions("FROM")
    assert len(bases) >= 2 and all("slim" in b for b in bases)
    users = instructions("USER")
    assert users and users[-1] not in ("root", "0")


def test_image_starts_the_console_script_the_readme_and_tests_use() -> None:
    command = json.loads(instructions("CMD")[-1])
    assert command[:2] == ["learner-export", "serve"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["learner-export"] == "learner_export.cli.main:main"
    port = command[command.index("--port") + 1]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert f"EXPOSE {port}" in DOCKERFILE
    run_lines = [line for line in README.splitlines() if line.startswith("docker run")]
    assert run_lines and all(f"-p {port}:{port}" in line for line in run_lines)
    assert "docker build -t learner-export ." in README


def test_image_installs_the_project_and_its_migrations() -> None:
    assert any("pip install" in r and " ." in r for r in instructions("RUN"))
    # The SQL is package data: the installed package carries it, nothing is copied beside it.
    assert not any(c.startswith("sql ") for c in instructions("COPY"))


def test_healthcheck_asks_healthz_on_the_served_port() -> None:
    check = instructions("HEALTHCHECK")[-1]
    port = json.loads(instructions("CMD")[-1])[-1]
    assert re.search(rf"127\.0\.0\.1:{port}/healthz", check)


def test_configuration_comes_only_from_the_environment() -> None:
    copied = [name for c in instructions("COPY") for name in shlex.split(c)[:-1]]
    assert not [n for n in copied if n.endswith((".env", ".ini", ".yaml", ".yml", ".cfg"))]
    for name in ("DATABASE_URL", "EXPORT_JWT_SECRET"):
        assert f"-e {name}=" in README
