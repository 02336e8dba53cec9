"""The README's demo command works: it starts, prints a curl command, and that command works."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_demo_prints_a_working_curl_command(tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "EXPORT_JWT_SECRET")}
    demo = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--demo", "--demo-learners", "1500",
         "--port", str(port)],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env,
        start_new_session=True)
    try:
        assert demo.stderr is not None
        output = ""
        deadline = time.monotonic() + 120
        while "Uvicorn running on" not in output and time.monotonic() < deadline:
            line = demo.stderr.readline()
            if not line:
                break
            output += line
        match = re.search(r"(curl .*?\n\s+'http[^']+')", output, re.S)
        assert match, output
        while time.monotonic() < deadline:  # listening once /healthz answers
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        command = shlex.split(match.group(1).replace("\\\n", " "))
        for fmt, check in (("csv", lambda b: b.count(b"\r\n") >= 1501),
                           ("jsonl", lambda b: b.count(b"\n") == 1500),
                           ("xlsx", lambda b: b[:2] == b"PK")):
            url = command[-1].replace("format=csv", f"format={fmt}")
            done = subprocess.run([*command[:-1], url], cwd=tmp_path, capture_output=True,
                                  timeout=60)
            assert done.returncode == 0, done.stderr
            files = list(tmp_path.glob(f"learners-*.{fmt}"))
            assert len(files) == 1  # saved under the name from Content-Disposition
            assert check(files[0].read_bytes())
    finally:
        os.killpg(demo.pid, signal.SIGINT)
        demo.wait(timeout=30)
