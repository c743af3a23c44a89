"""The layering of pyproject.toml's import-linter contracts: the work packages import no Dagster, wiring or settings,
a step of the flow imports only the steps before it, and no package has an import cycle."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from newsletter_pipeline_tests.conftest import REPO

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """import-linter on the package under `root`, with the contracts of `root`/pyproject.toml."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(root), "PATH": str(LINT_IMPORTS.parent)},
    )


def test_the_package_keeps_its_contracts():
    done = lint_imports(REPO)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "3 kept, 0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        # Each of the three contracts, broken once, as a change to the code would break it.
        ("clustering/reduce.py", "import dagster", "The work packages are plain Python"),
        ("items/dedupe.py", "from newsletter_pipeline.clustering import cluster", "Layers follow the flow"),
        ("landing/readers.py", "from newsletter_pipeline.landing import feeds", "No import cycles"),
    ],
)
def test_a_broken_contract_fails(tmp_path, module, line, broken):
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    shutil.copytree(
        REPO / "newsletter_pipeline", tmp_path / "newsletter_pipeline", ignore=shutil.ignore_patterns("__pycache__")
    )
    target = tmp_path / "newsletter_pipeline" / module
    # Inside a function, as the old cycles were hidden: import-linter counts those imports too.
    target.write_text(target.read_text() + f"\n\ndef _added():\n    {line}  # noqa: F401\n")
    done = lint_imports(tmp_path)
    assert done.returncode != 0
    assert f"{broken}" in done.stdout and "BROKEN" in done.stdout, done.stdout[-3000:]
    assert "2 kept, 1 broken" in done.stdout
