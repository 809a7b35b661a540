from batchsampler.cli import main


def test_bench_prints_a_row_per_size_with_the_naive_baseline(capsys):
    assert main(["bench", "--sizes", "1500", "2500"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [line.split() for line in lines if line.strip().startswith(("1,500", "2,500"))]
    assert [row[0] for row in rows] == ["1,500", "2,500"]
    assert all(len(row) == 8 and row[5].endswith("x") and row[7].endswith("x") for row in rows)
    assert any(line.startswith("naive:") for line in lines)


def test_bench_without_naive(capsys):
    assert main(["bench", "--sizes", "1200", "--no-naive", "--num-threads", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    row = next(line.split() for line in lines if line.strip().startswith("1,200"))
    assert len(row) == 4 and row[3].endswith("%")
