"""The CSV reader benchmark reads every row of both files it writes, quoted fields included."""

from __future__ import annotations

from benchmarks.bench_readers import main, read_seconds, write_csv_files


def test_both_files_are_read_whole_and_reported(tmp_path, capsys):
    files = write_csv_files(2_000, tmp_path)
    rows, seconds, cpu = read_seconds(files["quoted"])
    assert rows == sum(1 for _ in files["quoted"].open()) - 1 and seconds > 0 and cpu >= 0

    assert main(["--impressions", "2000", "--repeats", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| plain", "| quoted"]
    assert {line.split(" | ")[1] for line in lines[2:]} == {f"{rows:,}"}
