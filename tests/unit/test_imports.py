"""Every module imports on its own, first: a tool or a script that starts from
`learner_export.errors` or `learner_export.contract` must not meet an import cycle."""

from __future__ import annotations

import subprocess
import sys

# In one fresh interpreter: each module imported with no learner_export module loaded before it.
_SCRIPT = """
import importlib, pkgutil, sys
import learner_export
names = sorted(m.name for m in pkgutil.walk_packages(learner_export.__path__, "learner_export.")
               if not m.name.endswith("__main__"))
assert "learner_export.errors" in names and "learner_export.contract" in names, names
for name in names:
    for loaded in [m for m in sys.modules if m.startswith("learner_export.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception as exc:
        print(f"{name}: {type(exc).__name__}: {exc}")
"""


def test_every_module_imports_first() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, check=False
    )
    assert (done.returncode, done.stdout.splitlines()) == (0, []), done.stderr
