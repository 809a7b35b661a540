"""Packaging: the wheel installs batchsampler (with batchsampler.integrations) and nothing else."""

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _configuration() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]


def _package_folders() -> set[str]:
    """Every package of the source tree, under the name it must install as."""
    names = set()
    for top, installed in (("batchsampler", "batchsampler"), ("integrations", "batchsampler.integrations")):
        for init in (ROOT / top).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / top)
            if "__pycache__" not in relative.parts:
                names.add(".".join((installed, *relative.parts)))
    return names


def test_configured_packages_are_exactly_the_package_folders():
    configuration = _configuration()
    assert "find" not in configuration.get("packages", {}), "packages.find picks up stray batchsampler* folders"
    assert set(configuration["packages"]) == _package_folders()
    assert configuration["package-dir"] == {"batchsampler.integrations": "integrations"}
    assert not any(name == "integrations" or name.startswith("integrations.") for name in configuration["packages"])


def test_integrations_import_as_a_subpackage_from_outside_the_repository(tmp_path):
    code = (
        "import importlib.util, batchsampler.integrations as i, batchsampler.integrations.text as t;"
        "print(i.__file__); print(t.__name__); print(importlib.util.find_spec('integrations'))"
    )
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    location, name, top_level = result.stdout.split()
    # The repository's folder in an editable install, site-packages/batchsampler/integrations otherwise.
    assert Path(location).parts[-2:] == ("integrations", "__init__.py")
    assert name == "batchsampler.integrations.text"
    assert top_level == "None", "a generic top-level 'integrations' package is importable"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    """A wheel built (about 2 s, offline) from a copy of the sources next to stray folders."""
    source = tmp_path_factory.mktemp("source")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for name in ("batchsampler", "integrations"):
        shutil.copytree(ROOT / name, source / name, ignore=ignore)
    # What a working checkout holds besides the package: none of it may reach the wheel.
    for stray in ("batchsampler-demo", "tests", "benchmarks", "examples", "batchsampler-demo/sub"):
        (source / stray).mkdir(parents=True, exist_ok=True)
        (source / stray / "__init__.py").write_text("")
        (source / stray / "stray.py").write_text("x = 1\n")
    (source / "batchsampler-demo" / "RUN.json").write_text("{}\n")
    output = tmp_path_factory.mktemp("wheel")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", str(output), str(source)],
        capture_output=True, text=True, timeout=300,
    )
    if result.returncode != 0 and "No module named pip" in result.stderr:
        pytest.skip("pip is not installed")
    assert result.returncode == 0, result.stderr
    (path,) = output.glob("batchsampler-*.whl")
    with zipfile.ZipFile(path) as archive:
        yield archive


@pytest.fixture(scope="module")
def wheel_files(wheel) -> list[str]:
    return wheel.namelist()


def test_wheel_holds_batchsampler_and_its_integrations_only(wheel_files):
    tops = {name.split("/")[0] for name in wheel_files}
    assert tops == {"batchsampler", next(top for top in tops if top.endswith(".dist-info"))}
    for module in ("integrations/__init__.py", "integrations/graph/data.py", "integrations/text/train.py",
                   "integrations/vision/model.py", "cli/main.py", "losses/__init__.py"):
        assert f"batchsampler/{module}" in wheel_files
    assert not [name for name in wheel_files if "stray" in name or name.endswith("RUN.json")]


def test_wheel_top_level_names_batchsampler_only(wheel, wheel_files):
    # top_level.txt is what pip and importlib.metadata report as the distribution's packages.
    (top_level,) = [name for name in wheel_files if name.endswith(".dist-info/top_level.txt")]
    assert wheel.read(top_level).decode().split() == ["batchsampler"]
