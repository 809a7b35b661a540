"""``python -m benchmarks.bench_rescue`` runs and its rescued epochs are the ones that changed."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_rescue_runs_and_finds_the_rescued_epochs(tmp_path):
    out = tmp_path / "rescue.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_rescue", "--n", "188", "--batch-size", "128", "--epochs", "6",
         "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert (result["candidate_walks"], result["max_candidate_walks"]) == (8, 64)
    assert len(result["rescued"]) == len(result["seconds"]["rescue (default)"]) == 6
    assert any(result["rescued"])  # two batches of 188 rows: the best of 8 walks leaves the inner half
    rescue, plain = result["planned_hardness"]["rescue (default)"], result["planned_hardness"]["no extra walks"]
    for changed, with_rescue, without in zip(result["rescued"], rescue, plain):
        if not changed:
            assert with_rescue == without  # an unrescued epoch is walked as without extra walks
        else:
            assert abs(with_rescue - 0.5) <= 0.05 or abs(with_rescue - 0.5) < abs(without - 0.5)
    assert "| rescue (default) |" in done.stdout


def test_bench_rescue_rejects_a_batch_larger_than_the_bank():
    done = subprocess.run([sys.executable, "-m", "benchmarks.bench_rescue", "--n", "100", "--batch-size", "101"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2 and "--batch-size must be in [1, --n]" in done.stderr
