from batchsampler.cli import main


def test_bench_prints_a_row_per_size_with_the_naive_baseline(capsys):
    assert main(["bench", "--sizes", "1500", "2500"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [line.split() for line in lines if line.strip().startswith(("1,500", "2,500"))]
    assert [row[0] for row in rows] == ["1,500", "2,500"]
    assert all(len(row) == 11 and row[8].endswith("x") and row[10].endswith("x") for row in rows)
    assert any(line.startswith("naive:") for line in lines)


def test_bench_without_naive(capsys):
    assert main(["bench", "--sizes", "1200", "--no-naive", "--num-threads", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    row = next(line.split() for line in lines if line.strip().startswith("1,200"))
    assert len(row) == 7 and row[6].endswith("%")


def test_bench_scales_k_m_and_batch_size_to_small_sizes(capsys):
    assert main(["bench", "--sizes", "50", "300", "--no-naive", "--num-threads", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split() for line in lines if line.strip().startswith(("50 ", "300 "))}
    assert rows["50"][1:4] == ["5", "25", "25"]  # k = N / 10, m = N / 2, B = N / 2
    assert rows["300"][1:4] == ["30", "150", "150"]


def test_bench_k_and_m_flags(capsys):
    assert main(["bench", "--sizes", "100", "--k", "3", "--m", "7", "--batch-size", "10", "--no-naive"]) == 0
    row = next(line.split() for line in capsys.readouterr().out.splitlines() if line.strip().startswith("100 "))
    assert row[1:4] == ["3", "7", "10"]
    assert main(["bench", "--sizes", "50", "--k", "60"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("batchsampler bench: error: --sizes 50: needs 1 <= k < N") and "k=60" in err
