"""The package's layers, enforced with import-linter: a lower layer importing a higher one fails.

From the top: cli; train; inference; accel; methods; losses; data | metrics | models (independent
of each other); labels; config | io | files; errors. docs/ARCHITECTURE.md explains the order.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


# import-linter's command, installed beside this Python by the dev extra
LINT_IMPORTS = str(Path(sys.executable).with_name("lint-imports"))


def test_the_package_keeps_its_layers():
    # The contracts live in pyproject.toml ([tool.importlinter]); lint-imports reads them there.
    r = subprocess.run([LINT_IMPORTS, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Contracts: 3 kept, 0 broken" in r.stdout


def test_the_contract_catches_a_lower_layer_importing_a_higher_one(tmp_path):
    """The same contract on a copy of the package where models imports train must fail."""
    import shutil

    pkg = tmp_path / "src" / "decseg"
    shutil.copytree(ROOT / "decseg", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    blocks = pkg / "models" / "blocks.py"
    blocks.write_text(blocks.read_text() + "\nfrom decseg.train import trainer  # noqa\n")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    r = subprocess.run([LINT_IMPORTS, "--no-cache"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300,
                       env={"PYTHONPATH": str(tmp_path / "src"), "PATH": "/usr/bin:/bin"})
    assert r.returncode != 0
    assert "decseg.models.blocks -> decseg.train.trainer" in r.stdout
