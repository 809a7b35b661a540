"""The parameter sweep runs (quick mode) and writes its table and plots."""

import runpy
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "sweep_parameters.py"


@pytest.mark.slow
def test_quick_sweep_writes_tables_and_plots(tmp_path):
    result = runpy.run_path(str(SCRIPT))["main"](["--quick", "-o", str(tmp_path)])
    table = (tmp_path / "parameter_sweep.md").read_text()
    assert "| m | hardness |" in table and "| refresh every (batches) |" in table
    # m = k = 100: random neighbours, so the rule p * m holds on average over nodes.
    row = result["static"]["pixels"]["m"][100]
    assert row["same_label_neighbors"] == pytest.approx(row["rule"], rel=0.1)
    for name in ("parameter_sweep.png", "rule_of_thumb.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
