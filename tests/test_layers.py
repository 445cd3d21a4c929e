"""The house rules, checked with import-linter (the contract is in pyproject.toml): a module imports only from
its own floor or the floors below it, no stage imports another stage, and no module is too big to read."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import mothbrain

REPO = Path(mothbrain.__file__).parent.parent
MAX_LINES = 600  # a room a reader can hold


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """import-linter on the package under `root`, with the contract in `root`/pyproject.toml."""
    code = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run(
        [sys.executable, "-c", code, "--no-cache"],
        cwd=root,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
    )


def test_the_floors_contract_holds():
    out = lint_imports(REPO)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "1 kept, 0 broken" in out.stdout


@pytest.mark.parametrize(
    "module,line,broken",
    [
        # a stage reaching into another stage, at the top of a module
        (
            "wiki/merge.py",
            "from mothbrain.train import stage as _s",
            "mothbrain.wiki is not allowed to import mothbrain.train",
        ),
        # the same, hidden inside a function (a lazy import is still a door)
        (
            "dream/stage.py",
            "def _door():\n    from mothbrain.ask import coordinator  # noqa: F401\n",
            "mothbrain.dream is not allowed to import mothbrain.ask",
        ),
        # a shared floor importing a stage above it
        ("data/format.py", "import mothbrain.ingest.stage", "mothbrain.data is not allowed to import mothbrain.ingest"),
    ],
    ids=["stage-to-stage", "lazy-stage-to-stage", "floor-to-stage"],
)
def test_the_contract_refuses_a_door_between_stages(tmp_path, module, line, broken):
    shutil.copytree(REPO / "mothbrain", tmp_path / "mothbrain", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "mothbrain" / module
    target.write_text(target.read_text(encoding="utf-8") + "\n\n" + line + "\n", encoding="utf-8")
    out = lint_imports(tmp_path)
    assert out.returncode != 0
    assert broken in out.stdout


def test_no_module_is_too_big_to_read():
    sizes = {p.relative_to(REPO).as_posix(): len(p.read_text().splitlines()) for p in REPO.glob("mothbrain/**/*.py")}
    assert sizes, "no modules found"
    too_big = {name: n for name, n in sizes.items() if n > MAX_LINES}
    assert not too_big, f"modules over {MAX_LINES} lines: {too_big}"
