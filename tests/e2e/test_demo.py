"""The README's demo command works: it starts, prints a curl command, and that command works."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import _free_port


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_demo_prints_working_commands_and_leaves_its_secrets(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "EXPORT_JWT_SECRET", "EXPORT_TOKEN")
    }
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "learner_export.cli.main",
            "serve",
            "--demo",
            "--demo-learners",
            "1500",
            "--port",
            str(port),
        ],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**env, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        start_new_session=True,
    )
    try:
        assert demo.stderr is not None
        output = ""
        deadline = time.monotonic() + 120
        while "API documentation" not in output and time.monotonic() < deadline:
            line = demo.stderr.readline()
            if not line:
                break
            output += line
        commands = re.findall(r"^  (curl -fOJ .*)$", output, re.M)
        assert [c.rsplit("format=", 1)[1].rstrip("'") for c in commands] == [
            "csv",
            "jsonl",
            "xlsx",
            "parquet",
        ], output
        assert "/links" in output and "learner-export token --sub" in output
        secrets = (tmp_path / "learner-export-demo.env").read_text()
        assert "EXPORT_TOKEN=" in secrets and "EXPORT_JWT_SECRET=" in secrets
        assert oct((tmp_path / "learner-export-demo.env").stat().st_mode & 0o777) == "0o600"
        while time.monotonic() < deadline:  # listening once /healthz answers
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        checks = {
            "csv": lambda b: b.count(b"\r\n") >= 1501,
            "jsonl": lambda b: b.count(b"\n") == 1500,
            "xlsx": lambda b: b[:2] == b"PK",
            "parquet": lambda b: b[:4] == b"PAR1",
        }
        for command in commands:
            fmt = command.rsplit("format=", 1)[1].rstrip("'")
            done = subprocess.run(
                ["bash", "-c", f"set -a; . ./learner-export-demo.env; {command}"],
                cwd=tmp_path,
                capture_output=True,
                timeout=60,
            )
            assert done.returncode == 0, done.stderr
            files = list(tmp_path.glob(f"learners-*.{fmt}"))
            assert len(files) == 1  # saved under the name from Content-Disposition
            assert checks[fmt](files[0].read_bytes())
        # `learner-export token` finds the demo's secret, and its token works.
        admin = re.search(r"token --sub ([0-9a-f-]{36})", output)
        assert admin
        token = subprocess.run(
            [sys.executable, "-m", "learner_export.cli.main", "token", "--sub", admin.group(1)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env={**env, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        )
        assert token.returncode == 0, token.stderr
        response = httpx.get(
            f"http://127.0.0.1:{port}/v1/exports/learners?limit=1",
            headers={"Authorization": f"Bearer {token.stdout.strip()}"},
        )
        assert response.status_code == 200
    finally:
        os.killpg(demo.pid, signal.SIGINT)
        demo.wait(timeout=30)


def test_serve_without_a_database_or_demo_exits_2() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    done = subprocess.run(
        [sys.executable, "-m", "learner_export.cli.main", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert "DATABASE_URL is not set" in done.stderr and "--demo" in done.stderr
