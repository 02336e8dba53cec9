"""The README's commands and the demo's printed commands, run as written and in order, in a
fresh copy of the repository (its tracked files only: no venv, no env file): the install and
demo command, the downloads from the demo, then every command the demo printed."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import orjson
import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
DEMO_PORT = 8000  # the README's: its commands say 127.0.0.1:8000

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed"),
]


def _blocks() -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```$", README, re.M | re.S)


def _block(marker: str) -> str:
    (found,) = [b for b in _blocks() if marker in b]
    return found


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _fresh_copy(target: Path) -> Path:
    """The repository's tracked files as they are in the working tree."""
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, (f.decode() for f in files)):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def _link_answer(stdout: str) -> str:
    """The JSON that POST .../links answered (curl -s prints it with no line end)."""
    found = re.search(r'\{"url":[^}]*\}', stdout)
    assert found is not None, stdout
    return found.group(0)


def _bash(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # -e: a command that fails stops the block, as it would stop a reader.
    return subprocess.run(
        ["bash", "-e", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def test_the_readme_and_the_demo_commands_work_as_written(tmp_path: Path) -> None:
    if not _port_free(DEMO_PORT):
        pytest.skip(f"port {DEMO_PORT}, which the README's commands use, is taken here")
    repo = _fresh_copy(tmp_path / "learner-export")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("EXPORT_") and k not in ("DATABASE_URL", "VIRTUAL_ENV", "PYTHONPATH")
    }
    first = _block("serve --demo")
    with open(tmp_path / "demo.log", "w+") as log:
        demo = subprocess.Popen(
            ["bash", "-c", first],
            cwd=repo,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 600
            while "API documentation" not in Path(log.name).read_text():
                assert demo.poll() is None, Path(log.name).read_text()
                assert time.monotonic() < deadline, "the demo did not get ready"
                time.sleep(0.5)
            assert (repo / "learner-export-demo.env").stat().st_mode & 0o777 == 0o600
            banner = Path(log.name).read_text()
            # The banner is printed just before uvicorn binds the port; a person reading it is
            # slower than this test, which waits for the port as they would by reading.
            while not _answers(f"http://127.0.0.1:{DEMO_PORT}/healthz"):
                assert demo.poll() is None, Path(log.name).read_text()
                assert time.monotonic() < deadline, "the demo never listened"
                time.sleep(0.2)

            downloads = _bash(_block("learner-export-demo.env"), repo, env)
            assert downloads.returncode == 0, downloads.stderr
            assert len(list(repo.glob("learners-all-*.csv"))) == 1
            assert (repo / "learners-excel.csv").read_bytes()[:3] == b"\xef\xbb\xbf"
            assert len(list(repo.glob("learners-*.xlsx"))) == 1
            assert (repo / "active.jsonl").stat().st_size > 0
            assert (repo / "learners.parquet").read_bytes()[:4] == b"PAR1"
            assert (repo / "learners.jsonl").read_bytes().count(b"\n") == 50_000
            link = orjson.loads(_link_answer(downloads.stdout))
            assert link["url"].startswith(f"http://127.0.0.1:{DEMO_PORT}/")
            assert httpx.get(link["url"], timeout=60).status_code == 200

            # Every command the demo printed, in order, pasted as it is.
            printed = re.findall(r"^  (\S.*)$", banner, re.M)
            assert printed[0] == "set -a; . ./learner-export-demo.env; set +a"
            (home := tmp_path / "printed").mkdir()
            shutil.copy(repo / "learner-export-demo.env", home)
            script = "\n".join(printed)
            token_command = re.search(r"^A new token: (.*)$", banner, re.M)
            assert token_command is not None
            done = _bash(f"{script}\n{token_command.group(1)}", home, env)
            assert done.returncode == 0, done.stderr
            assert {p.suffix for p in home.glob("learners-*")} == {
                ".csv",
                ".jsonl",
                ".xlsx",
                ".parquet",
            }
            minted = orjson.loads(_link_answer(done.stdout))
            token = done.stdout.rsplit("}", 1)[1].strip()
            assert minted["url"].startswith(f"http://127.0.0.1:{DEMO_PORT}/")
            answer = httpx.get(
                f"http://127.0.0.1:{DEMO_PORT}/v1/exports/learners?limit=1",
                headers={"Authorization": f"Bearer {token}"},
            )
            assert answer.status_code == 200
        finally:
            os.killpg(demo.pid, signal.SIGINT)
            demo.wait(timeout=60)
