"""Every package but the Dagster layer (assets/, resources, jobs, runner, definitions) knows nothing of Dagster."""
import subprocess
import sys
from pathlib import Path

import pytest

import kwai_assets

PURE = ["core", "models", "llm", "sources", "io", "service", "spark"]
ROOT = Path(kwai_assets.__file__).parent


@pytest.mark.parametrize("package", [p for p in PURE if (ROOT / p).is_dir()])
def test_pure_package_does_not_import_dagster(package):
    if package == "spark":
        pytest.importorskip("pyspark")          # the optional `spark` extra
    modules = sorted(f"kwai_assets.{package}." + p.stem for p in (ROOT / package).glob("*.py") if p.stem != "__init__")
    code = ("import sys\n" + "".join(f"import {m}\n" for m in modules)
            + "print(sorted(m for m in sys.modules if m == 'dagster' or m.startswith('dagster.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"kwai_assets.{package} pulls in dagster: {out}"
