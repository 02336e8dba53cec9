"""The release as a user installs it: the wheel, built from the checkout and installed into a
fresh virtual environment (not editable), migrates, seeds, serves and exports from anywhere."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

import learner_export
from learner_export import sql
from tests.conftest import _free_port

ROOT = Path(__file__).resolve().parents[2]
LEARNERS = 300

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Installed:
    venv: Path
    home: Path  # an empty working directory: nothing to import from but the venv

    def command(self, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.venv / "bin" / "learner-export"), *args],
            cwd=self.home,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """`pip wheel --no-deps .`, then that wheel (with its dependencies) in a fresh venv."""
    wheels = tmp_path_factory.mktemp("wheels")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("learner_export-*.whl")
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", str(wheel)], check=True, capture_output=True
    )
    return Installed(venv, tmp_path_factory.mktemp("home"))


def _clean_env(**values: str) -> dict[str, str]:
    """The environment without anything that would let the checkout's code in."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "DATABASE_URL", "EXPORT_JWT_SECRET", "VIRTUAL_ENV")
    }
    return {**env, **values}


def test_the_installed_package_is_learner_export_and_not_service(installed: Installed) -> None:
    python = str(installed.venv / "bin" / "python")
    probe = subprocess.run(
        [
            python,
            "-c",
            "import importlib.metadata as m, learner_export as p;"
            "print(p.__file__); print(p.__version__, m.version('learner-export'))",
        ],
        cwd=installed.home,
        env=_clean_env(),
        capture_output=True,
        text=True,
    )
    where, versions = probe.stdout.splitlines()
    assert Path(where).is_relative_to(installed.venv)
    assert versions == f"{learner_export.__version__} {learner_export.__version__}"
    old = subprocess.run(
        [python, "-c", "import service"], cwd=installed.home, env=_clean_env(), capture_output=True
    )
    assert old.returncode == 1
    version = installed.command("--version", env=_clean_env())
    assert version.stdout == f"learner-export {learner_export.__version__}\n"
    # The wheel carries the compiled rendering (built by `pip wheel` with this machine's gcc).
    native = subprocess.run(
        [python, "-c", "from learner_export.formats import _render; print(_render.__file__)"],
        cwd=installed.home,
        env=_clean_env(),
        capture_output=True,
        text=True,
    )
    assert Path(native.stdout.strip()).is_relative_to(installed.venv), native.stderr


def test_the_wheel_migrates_seeds_serves_and_exports(
    installed: Installed, empty_database: str
) -> None:
    secret = "wheel-test-" + "s" * 40
    env = _clean_env(DATABASE_URL=empty_database, EXPORT_JWT_SECRET=secret)

    migrated = installed.command("db", "migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr
    shipped = ", ".join(f.name for f in sql.migration_files())
    assert migrated.stdout.startswith(f"applied: {shipped}\n")
    # The sample adapter needs the sample schema, which `db seed` creates (and applies it).
    seeded = installed.command("db", "seed", "--learners", str(LEARNERS), env=env)
    assert seeded.returncode == 0, seeded.stderr
    again = installed.command("db", "migrate", "--adapter", "sample", env=env)
    assert (again.returncode, again.stdout) == (0, "applied: nothing (up to date)\n")
    checked = installed.command("db", "check", env=env)
    assert checked.returncode == 0, checked.stdout
    admin = seeded.stdout.split("admin profile: ")[1].split()[0]
    token = installed.command("token", "--sub", admin, env=env).stdout.strip()

    port = _free_port()
    with open(installed.home / "serve.log", "w+") as log:
        server = subprocess.Popen(
            [str(installed.venv / "bin" / "learner-export"), "serve", "--port", str(port)],
            cwd=installed.home,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and server.poll() is None:
                try:
                    if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            response = httpx.get(
                f"{base}/v1/exports/learners",
                params={"format": "csv"},
                headers={"Authorization": f"Bearer {token}"},
                timeout=60,
            )
        finally:
            server.terminate()
            server.wait(timeout=30)
            log.seek(0)
            logs = log.read()
    assert response.status_code == 200, logs
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8"), newline="")))
    assert len(rows) == 1 + LEARNERS
