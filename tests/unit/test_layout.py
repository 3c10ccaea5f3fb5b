"""Tests mirror the package layout: the tests under tests/unit/<path>/ are those of the package <path>.

<path> is a package folder under budgetq/ (tests/unit/domain/loaders/ holds the tests of
budgetq/domain/loaders/), or worker/, scheduler/ and their subpackages (tests/unit/worker/ holds those
of worker/). Tests of a top-level module (budgetq/seed.py, settings.py), of the whole package
(test_architecture.py) or of files at the repository root (test_compose*.py: docker-compose.yml and
the Dockerfile) sit in tests/unit/ itself.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "tests" / "unit"
# Packages at the repository root beside budgetq/; any other first folder is one under budgetq/.
ROOT_PACKAGES = ("worker", "scheduler")


def mirrored(folder: Path) -> Path:
    """The package folder a folder under tests/unit/ stands for."""
    parts = folder.relative_to(UNIT).parts
    if parts[0] in ROOT_PACKAGES:
        return ROOT.joinpath(*parts)
    return ROOT.joinpath("budgetq", *parts)


def unit_test_folders() -> set[Path]:
    """Every folder below tests/unit/ on the way to a Python file (tests/unit/ itself left out)."""
    folders: set[Path] = set()
    for path in UNIT.rglob("*.py"):
        if "__pycache__" in path.parts:
            continue
        folders.update(p for p in path.parents if p.is_relative_to(UNIT) and p != UNIT)
    return folders


def test_every_folder_of_unit_tests_mirrors_a_package_folder() -> None:
    # Given every folder of the unit tests
    # When each is matched with the package folder of the same path
    unmirrored = sorted(
        f"{f.relative_to(ROOT).as_posix()}/ (no package {mirrored(f).relative_to(ROOT).as_posix()}/)"
        for f in unit_test_folders()
        if not (mirrored(f) / "__init__.py").is_file()
    )

    # Then each has one: a test of a module sits in the folder of that module
    assert unmirrored == [], "unit tests outside the package layout: " + ", ".join(unmirrored)


def test_every_folder_of_unit_tests_is_a_package() -> None:
    # Given every folder of the unit tests
    # Then each has an __init__.py, so its tests are imported as tests.unit.<path>.test_x and two test
    # files of the same name in different folders do not clash
    missing = sorted(
        f.relative_to(ROOT).as_posix() for f in unit_test_folders() if not (f / "__init__.py").is_file()
    )
    assert missing == [], "test folders without __init__.py: " + ", ".join(missing)
