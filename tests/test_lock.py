"""The lock: `make setup` installs exactly requirements.lock, and stops, naming the package, when pyproject.toml asks
for something the lock does not hold."""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "requirements.lock"
sys.path.insert(0, str(REPO / "scripts"))

from check_lock import locked_versions  # noqa: E402


def test_the_environment_holds_exactly_the_locked_versions():
    pins = locked_versions(LOCK.read_text())
    assert {"torch", "transformers", "datasets", "accelerate", "gradio", "huggingface-hub", "pip"} <= set(pins)
    installed = {name: importlib.metadata.version(name) for name in pins}
    assert {name: version for name, version in installed.items() if version != str(pins[name])} == {}


def test_the_lock_covers_every_requirement_of_pyproject():
    check = subprocess.run(
        [sys.executable, "scripts/check_lock.py"], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert (check.returncode, check.stderr) == (0, "")


@pytest.fixture
def stale_checkout(tmp_path) -> Path:
    """A copy of the set-up files whose pyproject.toml adds a package and raises a floor past the locked version."""
    for name in ("Makefile", "pyproject.toml", "requirements.lock", "scripts/check_lock.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, tmp_path / name)
    pyproject = (tmp_path / "pyproject.toml").read_text()
    assert '"transformers>=' in pyproject and '"pytest>=' in pyproject
    pyproject = pyproject.replace('"pytest>=', '"rich-click>=1.8",\n    "pytest>=', 1)
    pyproject = re.sub(r'"transformers>=[^"]*"', '"transformers>=99"', pyproject)
    (tmp_path / "pyproject.toml").write_text(pyproject)
    return tmp_path


def test_a_stale_lock_stops_setup_before_anything_unlocked_is_installed(stale_checkout):
    # The locked packages are in place (stamp newer than the lock): the next step must refuse the stale lock.
    (stale_checkout / ".venv").mkdir()
    (stale_checkout / ".venv" / ".locked").touch()
    os.utime(stale_checkout / "requirements.lock", (0, 0))
    setup = subprocess.run(
        ["make", "--no-print-directory", ".venv/.installed", f"PY={sys.executable}"],
        cwd=stale_checkout,
        capture_output=True,
        text=True,
        check=False,
    )
    assert setup.returncode != 0
    assert "rich-click>=1.8 is in pyproject.toml but not in the lock" in setup.stderr
    assert "transformers>=99 is in pyproject.toml but the lock has transformers==" in setup.stderr
    assert f"the lock has transformers=={importlib.metadata.version('transformers')}" in setup.stderr
    assert "Run `make lock`" in setup.stderr
    assert "pip install" not in setup.stdout and not (stale_checkout / ".venv" / ".installed").exists()


def test_a_missing_lock_is_named(tmp_path):
    check = subprocess.run(
        [sys.executable, str(REPO / "scripts/check_lock.py"), "--lock", str(tmp_path / "requirements.lock")],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 1 and "requirements.lock is missing: run `make lock`" in check.stderr


def test_pins_are_read_from_pip_compile_output():
    text = """#
#    make lock
#
--extra-index-url https://example.invalid/simple
Torch_Audio==2.11.0 \\
    --hash=sha256:abc
    # via mer (pyproject.toml)
numpy==2.4.6  # via -c requirements.lock, torch
mer @ file:///somewhere
"""
    assert {name: str(version) for name, version in locked_versions(text).items()} == {
        "torch-audio": "2.11.0",
        "numpy": "2.4.6",
    }
