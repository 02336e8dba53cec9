"""What the repository must never hold: an env file (the demo writes its secrets to one), and so
nothing that `learner-export token` could take a secret from."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_no_env_file_is_tracked() -> None:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert len(tracked) > 100
    assert [f for f in tracked if f.endswith(".env") or Path(f).name.startswith(".env")] == []


def test_the_demo_env_file_is_ignored() -> None:
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", "learner-export-demo.env"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert ignored.stdout == "learner-export-demo.env\n"
