"""Benchmarks and the product never import from tests/ (tests may import bench/, not the reverse).

import-linter's contracts cover only the relctl packages, so this parses the sources itself.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ["domain", "application", "adapters", "streams", "projections", "infra",
           "entrypoints"]


def sources() -> list[Path]:
    files = sorted((ROOT / "bench").glob("*.py"))
    for folder in PRODUCT:
        files += sorted((ROOT / folder).rglob("*.py"))
    return files


def imports_of_tests(path: Path) -> list[str]:
    """Every `import tests...` / `from tests... import` in the file, as "line: module"."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        else:
            continue
        found += [f"{node.lineno}: {module}" for module in modules
                  if module == "tests" or module.startswith("tests.")]
    return found


def test_the_scan_sees_bench_and_every_product_folder() -> None:
    files = sources()
    assert any(path.parent.name == "bench" for path in files)
    for folder in PRODUCT:
        assert any(path.relative_to(ROOT).parts[0] == folder for path in files), folder


def test_the_scan_finds_an_import_of_tests(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import os\nimport tests.conftest\n"
                      "from tests.unit.support import new_app\nfrom .tests import x\n")
    assert imports_of_tests(sample) == ["2: tests.conftest", "3: tests.unit.support"]


@pytest.mark.parametrize("path", sources(), ids=lambda path: str(path.relative_to(ROOT)))
def test_no_import_from_tests(path: Path) -> None:
    assert imports_of_tests(path) == []
