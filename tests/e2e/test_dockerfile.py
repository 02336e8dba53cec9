"""The image, built and run by a Docker engine: it installs the wheel, migrates with the shipped
sample adapter by name, serves on the PORT it is given as a non-root user, and reports healthy.
Skipped, saying so, where no Docker engine answers."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import _admin, _free_port, _with_database, run

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "learner-export:test"


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not _docker_answers(), reason="no Docker engine answers `docker info`"),
]


@pytest.fixture(scope="module")
def image() -> str:
    subprocess.run(["docker", "build", "-q", "-t", IMAGE, str(ROOT)], check=True, timeout=900)
    return IMAGE


@pytest.fixture
def empty_database(pg_server: str) -> Iterator[str]:
    name = f"learner_export_docker_{uuid.uuid4().hex[:12]}"
    run(_admin(pg_server, f'CREATE DATABASE "{name}"'))
    try:
        yield _with_database(pg_server, name)
    finally:
        run(_admin(pg_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _docker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=300)


def test_the_image_runs_as_non_root_and_holds_no_checkout(image: str) -> None:
    who = _docker("run", "--rm", image, "sh", "-c", "id -u; ls -A /app")
    assert who.stdout == "10001\n"  # nothing in the working directory: no sources, no env file


def test_the_image_migrates_and_serves_on_its_port(image: str, empty_database: str) -> None:
    url = empty_database
    # The host's loopback, as the database sees the container on the host network.
    seeded = _docker(
        "run",
        "--rm",
        "--network",
        "host",
        "-e",
        f"DATABASE_URL={url}",
        image,
        "learner-export",
        "db",
        "seed",
        "--learners",
        "100",
    )
    assert seeded.returncode == 0, seeded.stderr
    migrated = _docker(
        "run",
        "--rm",
        "--network",
        "host",
        "-e",
        f"DATABASE_URL={url}",
        image,
        "learner-export",
        "db",
        "migrate",
        "--adapter",
        "sample",
    )
    assert migrated.stdout == "applied: nothing (up to date)\n", migrated.stderr
    port = _free_port()
    name = f"learner-export-test-{uuid.uuid4().hex[:8]}"
    started = _docker(
        "run",
        "-d",
        "--name",
        name,
        "--network",
        "host",
        "-e",
        f"DATABASE_URL={url}",
        "-e",
        "EXPORT_JWT_SECRET=" + "d" * 40,
        "-e",
        f"PORT={port}",
        image,
    )
    assert started.returncode == 0, started.stderr
    try:
        deadline = time.monotonic() + 90
        health = ""
        while time.monotonic() < deadline and health != "healthy":
            time.sleep(1)
            health = _docker("inspect", "-f", "{{.State.Health.Status}}", name).stdout.strip()
        assert health == "healthy"
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
    finally:
        _docker("rm", "-f", name)
