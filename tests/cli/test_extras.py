"""Commands whose optional dependencies (extras) are missing: help works, runs say what to install.

Each case runs in a fresh interpreter where the extra's modules are made unimportable
(``sys.modules[name] = None``), as if the extra were not installed.
"""

import subprocess
import sys

import pytest

from batchsampler.integrations import MissingExtraError, extra_for, require_extra

RUN = (
    "import sys\n"
    "for name in sys.argv[1].split(','):\n"
    "    sys.modules[name] = None\n"
    "from batchsampler.cli import main\n"
    "sys.exit(main(sys.argv[2:]))\n"
)


def _run(missing, *argv, cwd):
    return subprocess.run(
        [sys.executable, "-c", RUN, ",".join(missing), *argv], cwd=cwd, capture_output=True, text=True, timeout=300
    )


CASES = [
    ("graph", ["torch_geometric"], ["reproduce", "graph"]),
    ("text", ["sentence_transformers", "transformers"], ["reproduce", "text"]),
]


@pytest.mark.parametrize(("extra", "missing", "command"), CASES)
def test_help_works_without_the_extra(tmp_path, extra, missing, command):
    result = _run(missing, *command, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: batchsampler {' '.join(command)}")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("extra", "missing", "command"), CASES)
def test_a_run_without_the_extra_names_it_in_one_line(tmp_path, extra, missing, command):
    result = _run(missing, *command, "--quick", "--output-dir", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"batchsampler {' '.join(command)}: error: ")
    assert f'pip install "batchsampler[{extra}]"' in line and repr(missing[0]) in line
    assert not (tmp_path / "out").exists()  # stopped before writing anything


def test_graph_tables_from_json_need_no_extra(tmp_path):
    import json

    runs = [{"dataset": "MUTAG", "accuracy": 0.8, "config": {"sampler": "uniform", "loss": "ntxent", "seed": 0}}]
    (tmp_path / "runs.json").write_text(json.dumps({"runs": runs}))
    result = _run(["torch_geometric"], "reproduce", "graph", "--from-json", str(tmp_path / "runs.json"),
                  "--output-dir", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "graphcl_table.md").is_file()


def test_vision_image_folders_need_pillow(tmp_path):
    result = _run(["PIL"], "reproduce", "vision", "--dataset", "folder", "--root", str(tmp_path),
                  "--output-dir", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert 'pip install "batchsampler[vision]"' in result.stderr and "--dataset folder" in result.stderr


def test_require_extra_and_extra_for(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch_geometric", None)
    with pytest.raises(MissingExtraError, match=r'pip install "batchsampler\[graph\]"') as error:
        require_extra("graph")
    assert error.value.extra == "graph" and error.value.name == "torch_geometric"
    assert isinstance(error.value, ModuleNotFoundError)
    assert extra_for(ModuleNotFoundError("x", name="transformers.models")) == "text"
    assert extra_for(ModuleNotFoundError("x", name="somethingelse")) is None
    require_extra("graph", modules=("json",))  # installed: no error


@pytest.mark.parametrize("command", [["reproduce", "graph"], ["reproduce", "text"], ["reproduce", "vision"]])
def test_reproduce_commands_offer_no_progress(command, capsys):
    from batchsampler.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    assert "--no-progress" in capsys.readouterr().out
