from batchsampler.cli import main


def test_demo_prints_one_row_per_sampler(capsys):
    assert main(["demo", "--batch-size", "128"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("digits: 1797 instances x 64 dims, 10 classes")
    rows = {line.split()[0]: line.split() for line in lines if line.split() and line.split()[0] in ("uniform", "knn", "batchsampler")}
    assert set(rows) == {"uniform", "knn", "batchsampler"}
    assert all(row[1] == "15" and row[4] == "1.000" for row in rows.values())  # 15 batches, full coverage
    assert float(rows["batchsampler"][2]) > float(rows["uniform"][2])
    assert float(rows["batchsampler"][3]) < float(rows["knn"][3])
