"""The Next.js route handler example (examples/nextjs), run by Node's test runner against the
service: a 303 to a signed link whose download is the real export."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import LINK_SECRETS, LiveServer

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "nextjs"
NODE = shutil.which("node")
NPM = shutil.which("npm")


@pytest.mark.skipif(
    NODE is None or NPM is None,
    reason="Node.js and npm are needed to test examples/nextjs (apt-get install nodejs npm)",
)
def test_nextjs_route_hands_the_browser_a_working_link(
    start_server: Callable[..., LiveServer],
) -> None:
    assert NPM is not None and NODE is not None
    server = start_server(link_secrets=LINK_SECRETS)
    installed = subprocess.run(
        [NPM, "ci", "--no-audit", "--no-fund"],
        cwd=EXAMPLE,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert installed.returncode == 0, installed.stderr
    compiled = subprocess.run(
        [str(EXAMPLE / "node_modules" / ".bin" / "tsc"), "-p", "tsconfig.json"],
        cwd=EXAMPLE,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    env = {**os.environ, "LEARNER_EXPORT_URL": server.url, "LEARNER_EXPORT_TOKEN": server.token}
    ran = subprocess.run(
        [NODE, "--test", "dist/test/route.test.js"],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = ran.stdout + ran.stderr
    assert ran.returncode == 0, report
    assert "# pass 10" in report and "# fail 0" in report, report
