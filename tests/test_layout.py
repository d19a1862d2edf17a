"""The package layout is a rule, not a habit: ``lint-imports`` holds the contracts in
pyproject.toml (Ray only in runtime, torch and sam2 only in track and training, plain
media/dataset/plan/finish, dataset readers that start nothing, cli > driver > runtime > track)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = str(Path(sys.executable).with_name("lint-imports"))


def _lint_imports(pythonpath: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run([LINT_IMPORTS, "--no-cache", "--config", str(ROOT / "pyproject.toml")],
                          cwd=pythonpath, env=env, capture_output=True, text=True)


def test_the_import_contracts_hold():
    done = _lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_the_contracts_fail_when_plan_imports_ray(tmp_path):
    """The check can fail: a copy of the package with ``import ray`` in a plan module."""
    shutil.copytree(ROOT / "sam_batch", tmp_path / "sam_batch",
                    ignore=shutil.ignore_patterns("*.pt", "__pycache__"))
    chunks = tmp_path / "sam_batch" / "plan" / "chunks.py"
    chunks.write_text(chunks.read_text() + "\n\ndef _cluster():\n    import ray\n    return ray\n")
    done = _lint_imports(tmp_path)
    assert done.returncode != 0, done.stdout + done.stderr
    assert "Ray is imported only in runtime BROKEN" in done.stdout
    assert "sam_batch.plan.chunks -> ray" in done.stdout


def test_inspect_export_and_eval_never_import_torch(tmp_path):
    """Reading a finished dataset needs no model: those commands start without torch, sam2
    or Ray (``eval`` scores the dataset against itself as the reference run)."""
    from datasetkit import build_dataset

    built = build_dataset(tmp_path / "ds", audio=False)
    script = (
        "import sys\n"
        "from sam_batch.cli import main\n"
        f"assert main(['inspect', {built.url!r}]) == 0\n"
        f"assert main(['export', {built.url!r}, '--format', 'davis', "
        f"'--out', {str(tmp_path / 'davis')!r}]) == 0\n"
        f"assert main(['eval', {built.url!r}, '--gt', {built.url!r}]) == 0\n"
        "print('torch' in sys.modules, 'sam2' in sys.modules, 'ray' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=ROOT / "tests")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False False False", done.stdout + done.stderr
