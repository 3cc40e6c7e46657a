"""Readers: CSV, JSONL and Parquet give the same rows; unreadable rows are named; BigQuery reads are configured."""

import numpy as np
import pandas as pd
import pytest

from components.data import readers
from components.data.readers import DataSourceError, bigquery_read, read_batches, resolve_files
from components.data.rows import parse_batch
from components.data.spec import SourceSpec, load_dataset_spec
from tests.data.impressions import impressions_frame, write_csv, write_jsonl, write_parquet


@pytest.fixture(scope="module")
def spec():
    return load_dataset_spec("simulator")


def parsed_rows(path, spec, source: SourceSpec, batch_rows=7) -> pd.DataFrame:
    frames = [
        parse_batch(batch, spec, 0, str(path)).frame
        for batch in read_batches(str(path), source, spec.required_columns, batch_rows=batch_rows)
    ]
    return pd.concat(frames, ignore_index=True)


def test_csv_jsonl_and_parquet_read_the_same_rows(tmp_path, spec):
    frame = impressions_frame(n_requests=6, candidates=4)
    parquet = parsed_rows(write_parquet(frame, tmp_path / "pq", parts=1) / "part-00000.parquet", spec, spec.source)
    csv = parsed_rows(write_csv(frame, tmp_path / "rows.csv"), spec, SourceSpec(format="csv"))
    jsonl = parsed_rows(write_jsonl(frame, tmp_path / "rows.jsonl"), spec, SourceSpec(format="jsonl"))
    assert len(parquet) == len(frame)
    parquet, csv, jsonl = (rows.drop(columns="_uid") for rows in (parquet, csv, jsonl))  # row numbers differ
    pd.testing.assert_frame_equal(parquet, csv, check_dtype=False)
    pd.testing.assert_frame_equal(parquet, jsonl, check_dtype=False)


def test_row_numbers_follow_lines_past_malformed_csv_and_json(tmp_path, spec):
    frame = impressions_frame(n_requests=1, candidates=4)
    lines = write_csv(frame, tmp_path / "a.csv").read_text().splitlines()
    lines.insert(2, "only,three,fields")  # becomes line 3
    (tmp_path / "a.csv").write_text("\n".join(lines) + "\n")
    batches = list(read_batches(str(tmp_path / "a.csv"), SourceSpec(format="csv"), spec.required_columns))
    assert np.concatenate([b.rows for b in batches]).tolist() == [2, 4, 5, 6]
    [(line, reason)] = [error for b in batches for error in b.errors]
    assert line == 3 and reason.startswith("malformed CSV line")

    json_lines = write_jsonl(frame, tmp_path / "a.jsonl").read_text().splitlines()
    json_lines[1] = '{"request_id": "r0000", '
    json_lines.insert(3, "[1, 2]")
    json_lines[4] = json_lines[4][: json_lines[4].index(":") - 2]  # cut inside a key: '{"request_i'
    (tmp_path / "a.jsonl").write_text("\r\n".join(json_lines) + "\r\n")
    batches = list(read_batches(str(tmp_path / "a.jsonl"), SourceSpec(format="jsonl"), spec.required_columns))
    assert np.concatenate([b.rows for b in batches]).tolist() == [1, 3]
    errors = [error for b in batches for error in b.errors]
    assert [line for line, _ in errors] == [2, 4, 5]
    assert all(reason.startswith("malformed JSON") for _, reason in errors)
    assert "Unterminated string" in errors[2][1]  # was "Invalid control character": the newline, read as in the string


@pytest.mark.parametrize("block_bytes", [1 << 22, 300])  # one block, or many (pyarrow then fails the block)
def test_a_stray_quote_costs_its_line_not_the_lines_after_it(tmp_path, spec, monkeypatch, block_bytes):
    """pyarrow runs an unclosed quoted field to the end of its block: the rest of the file became one dead
    letter (row counts still added up), or the read failed "out of sync" with no line named."""
    monkeypatch.setattr(readers, "_CSV_BLOCK_BYTES", block_bytes)
    frame = impressions_frame(n_requests=10, candidates=4)
    lines = write_csv(frame, tmp_path / "a.csv").read_text().splitlines()  # header + 40 rows
    lines[4] = '"' + lines[4]  # line 5: a quote that never closes
    lines[30] = "only,three,fields"  # line 31: malformed after it
    lines[20] = '"' + lines[20].replace(",", '",', 1)  # line 21: a quoted first field, which closes
    lines.insert(10, "")  # a blank line 11: no row
    (tmp_path / "a.csv").write_text("\r\n".join(lines) + "\r\n")
    batches = list(read_batches(str(tmp_path / "a.csv"), SourceSpec(format="csv"), spec.required_columns))
    rows = np.concatenate([b.rows for b in batches]).tolist()
    errors = sorted(error for b in batches for error in b.errors)
    assert rows == [line for line in range(2, 43) if line not in (5, 11, 32)]
    assert [line for line, _ in errors] == [5, 32]
    assert errors[0][1].startswith("malformed CSV line: a quoted field never closes: b'\"")
    assert errors[1][1].startswith("malformed CSV line: expected")
    assert len(rows) + len(errors) == 40  # every row is read or a dead letter


@pytest.mark.parametrize("block_bytes", [1 << 22, 200])
def test_a_lone_carriage_return_costs_its_line_and_a_line_longer_than_a_block_is_read(
    tmp_path, spec, monkeypatch, block_bytes
):
    """pyarrow ends a row at a lone CR: the line counts no longer matched the rows and the file failed to read
    (or, with a blank line too, the counts matched by chance and every later row had the wrong line)."""
    monkeypatch.setattr(readers, "_CSV_BLOCK_BYTES", block_bytes)
    frame = impressions_frame(n_requests=3, candidates=4).astype({"device": object})
    frame.at[5, "device"] = "m" * 600  # line 7: longer than a small block
    lines = write_csv(frame, tmp_path / "a.csv").read_text().splitlines()  # header + 12 rows
    lines[3] = lines[3].replace(",", ",\r", 1)  # line 4: a CR inside
    lines.insert(8, "")  # line 9: blank
    (tmp_path / "a.csv").write_bytes(("\n".join(lines)).encode())  # no newline at the end
    batches = list(read_batches(str(tmp_path / "a.csv"), SourceSpec(format="csv"), spec.required_columns))
    rows = np.concatenate([b.rows for b in batches]).tolist()
    [(line, reason)] = [error for b in batches for error in b.errors]
    assert rows == [line for line in range(2, 15) if line not in (4, 9)]
    assert line == 4 and reason.startswith("malformed CSV line: a carriage return inside the line")


def test_a_line_with_the_wrong_field_count_that_is_not_utf8_costs_that_line(tmp_path):
    """pyarrow cannot report such a line to the handler (it decodes it first): the whole file failed to read."""
    (tmp_path / "a.csv").write_bytes(b"a,b,c\n1,2,3\n4,\xff5\n6,7,8\n")
    batches = list(read_batches(str(tmp_path / "a.csv"), SourceSpec(format="csv"), ["a", "b"]))
    assert np.concatenate([b.rows for b in batches]).tolist() == [2, 4]
    [(line, reason)] = [error for b in batches for error in b.errors]
    assert line == 3 and reason == (
        "malformed CSV line: expected 3 fields, got 2, in a line that is not UTF-8 text: b'4,\\xff5'"
    )


def test_a_csv_without_a_header_is_read_with_the_specs_column_names(tmp_path, spec):
    frame = impressions_frame(n_requests=3, candidates=4)
    headed = write_csv(frame, tmp_path / "headed.csv")
    lines = headed.read_text().splitlines()
    names = tuple(lines[0].split(","))
    lines = lines[1:]
    lines.insert(1, "only,three,fields")  # line 2 of the file
    (tmp_path / "bare.csv").write_text("\n".join(lines) + "\n")
    source = SourceSpec(format="csv", column_names=names)
    bare = parsed_rows(tmp_path / "bare.csv", spec, source)
    expected = parsed_rows(headed, spec, SourceSpec(format="csv"))
    pd.testing.assert_frame_equal(bare.drop(columns="_uid"), expected.drop(columns="_uid"))
    batches = list(read_batches(str(tmp_path / "bare.csv"), source, spec.required_columns))
    assert np.concatenate([b.rows for b in batches]).tolist()[:3] == [1, 3, 4]  # file lines: no header to skip
    [(line, reason)] = [error for b in batches for error in b.errors]
    assert line == 2 and reason.startswith("malformed CSV line")
    with pytest.raises(DataSourceError, match=r"bare.csv: missing column\(s\) 'device'"):
        named = SourceSpec(format="csv", column_names=tuple(name for name in names if name != "device"))
        next(read_batches(str(tmp_path / "bare.csv"), named, spec.required_columns))


def test_csv_cells_read_as_missing_are_the_usual_markers_unless_the_spec_says_which(tmp_path):
    (tmp_path / "a.csv").write_text("user_id,category\nNA,NULL\nu2,\nnull,nan\n")

    def cells(source: SourceSpec) -> list[list]:
        [batch] = read_batches(str(tmp_path / "a.csv"), source, ["user_id", "category"])
        return batch.frame.astype(object).where(batch.frame.notna(), None).values.tolist()

    assert cells(SourceSpec(format="csv")) == [[None, None], ["u2", None], [None, None]]
    assert cells(SourceSpec(format="csv", null_values=("",))) == [["NA", "NULL"], ["u2", None], ["null", "nan"]]


def test_resolve_files_takes_a_folder_a_glob_or_a_file(tmp_path):
    folder = write_parquet(impressions_frame(n_requests=4), tmp_path / "logs", parts=2)
    (folder / "notes.txt").write_text("not data")
    source = SourceSpec(format="parquet")
    expected = [str(folder / "part-00000.parquet"), str(folder / "part-00001.parquet")]
    assert resolve_files(str(folder), source) == expected
    assert resolve_files(str(folder) + "/", source) == expected
    assert resolve_files(str(folder / "part-0000[1]*"), source) == expected[1:]
    assert resolve_files(expected[0], source) == expected[:1]
    with pytest.raises(DataSourceError, match=r"no csv files match .*logs"):
        resolve_files(str(folder), SourceSpec(format="csv"))
    with pytest.raises(DataSourceError, match="no parquet files match"):
        resolve_files(str(tmp_path / "missing"), source)


def test_bigquery_tables_use_the_storage_api_with_only_the_needed_columns():
    spec = load_dataset_spec("simulator")
    read = bigquery_read(SourceSpec(format="bigquery"), spec.required_columns, project="p", data_uri="bq://p.logs.imp")
    assert read.kwargs == {
        "table": "p.logs.imp",
        "method": "DIRECT_READ",
        "selected_fields": list(spec.required_columns),
        "project": "p",
    }
    legacy = bigquery_read(SourceSpec(format="bigquery", table="p:logs.imp"), ["a"])
    assert legacy.kwargs["table"] == "p.logs.imp" and legacy.description == "table p:logs.imp"


def test_bigquery_queries_export_through_the_temp_location():
    source = SourceSpec(format="bigquery", query="SELECT * FROM `p.logs.imp` WHERE day > '2024-01-01'")
    read = bigquery_read(source, ["a"], project="p", temp_location="gs://bucket/tmp")
    assert read.kwargs == {
        "query": source.query,
        "use_standard_sql": True,
        "method": "EXPORT",
        "gcs_location": "gs://bucket/tmp",
        "project": "p",
    }


def test_bigquery_read_names_a_bad_table():
    with pytest.raises(DataSourceError, match=r"'logs' must be project.dataset.table"):
        bigquery_read(SourceSpec(format="bigquery"), ["a"], data_uri="bq://logs")
    with pytest.raises(DataSourceError, match="needs a table"):
        bigquery_read(SourceSpec(format="bigquery"), ["a"])


def test_the_bigquery_read_config_builds_a_beam_transform():
    import apache_beam as beam

    read = bigquery_read(SourceSpec(format="bigquery"), ["a", "b"], project="p", data_uri="bq://p.d.t")
    transform = beam.io.ReadFromBigQuery(**read.kwargs)
    assert transform.method == beam.io.ReadFromBigQuery.Method.DIRECT_READ


def test_a_file_without_a_needed_column_is_named(tmp_path, spec):
    folder = write_parquet(impressions_frame(n_requests=2).drop(columns=["rating"]), tmp_path / "pq", parts=1)
    with pytest.raises(DataSourceError, match=r"part-00000.parquet: missing column\(s\) 'rating'"):
        next(read_batches(str(folder / "part-00000.parquet"), spec.source, spec.required_columns))
    csv = write_csv(impressions_frame(n_requests=2).drop(columns=["device"]), tmp_path / "a.csv")
    with pytest.raises(DataSourceError, match=r"a.csv: missing column\(s\) 'device'"):
        next(read_batches(str(csv), SourceSpec(format="csv"), spec.required_columns))


def test_gzipped_jsonl_and_csv_are_read_transparently(tmp_path, spec):
    import gzip

    frame = impressions_frame(n_requests=3, candidates=2)
    for name, file_format in (("rows.jsonl", "jsonl"), ("rows.csv", "csv")):
        plain = (write_jsonl if file_format == "jsonl" else write_csv)(frame, tmp_path / name)
        zipped = tmp_path / f"{name}.gz"
        zipped.write_bytes(gzip.compress(plain.read_bytes()))
        source = SourceSpec(format=file_format)
        expected = parsed_rows(plain, spec, source)
        pd.testing.assert_frame_equal(parsed_rows(zipped, spec, source), expected)
        assert resolve_files(str(tmp_path), SourceSpec(format=file_format, pattern=f"*.{file_format}.gz")) == [
            str(zipped)
        ]


def test_csv_cells_that_are_not_utf8_cost_their_row_not_the_file(tmp_path, spec):
    frame = impressions_frame(n_requests=2, candidates=4)
    frame["device"] = ["ios", "web", "caf\u00e9", "ios", "web", "ios", "web", "ios"]
    path = write_csv(frame, tmp_path / "a.csv")
    data = path.read_bytes()
    path.write_bytes(data.replace("caf\u00e9".encode(), b"caf\xe9").replace(b",ios,", b",i\xf6s,", 1))
    batches = list(read_batches(str(path), SourceSpec(format="csv"), spec.required_columns, batch_rows=3))
    assert np.concatenate([b.rows for b in batches]).tolist() == [3, 5, 6, 7, 8, 9]
    errors = sorted(error for b in batches for error in b.errors)
    assert errors == [
        (2, "device: b'i\\xf6s' is not UTF-8 text (byte 0xf6 at offset 1: invalid start byte)"),
        (4, "device: b'caf\\xe9' is not UTF-8 text (byte 0xe9 at offset 3: unexpected end of data)"),
    ]
    rows = parsed_rows(path, spec, SourceSpec(format="csv"), batch_rows=3)
    assert rows["device"].tolist() == ["web", "ios", "web", "ios", "web", "ios"]


def test_jsonl_lines_and_csv_headers_that_are_not_utf8_are_named(tmp_path, spec):
    frame = impressions_frame(n_requests=1, candidates=4)
    path = write_jsonl(frame, tmp_path / "a.jsonl")
    lines = path.read_bytes().splitlines()
    lines[1] = lines[1].replace(b'"device":"', b'"device":"\xff')
    lines[2] = lines[2].replace(b'"device":"', b'"device":"\\ud83d')  # half of an escaped emoji
    lines[3] = lines[3].replace(b'"device":"', b'"device":"\\ud83d\\ude00')  # a whole one is text
    path.write_bytes(b"\n".join(lines) + b"\n")
    batches = list(read_batches(str(path), SourceSpec(format="jsonl"), spec.required_columns))
    assert np.concatenate([b.rows for b in batches]).tolist() == [1, 4]
    assert batches[0].frame["device"].iloc[1].startswith("\U0001f600")
    [(line, reason), (surrogate_line, surrogate_reason)] = [error for b in batches for error in b.errors]
    assert line == 2 and reason.startswith("malformed JSON: b'{") and "is not UTF-8 text (byte 0xff" in reason
    assert (
        surrogate_line == 3
        and surrogate_reason == "malformed JSON: a \\u escape is half of a UTF-16 surrogate pair, not text"
    )

    csv = tmp_path / "h.csv"
    csv.write_bytes(b"request_id,caf\xe9\nr1,x\n")
    with pytest.raises(DataSourceError, match=r"h\.csv: the header line is not UTF-8: b'request_id,caf\\xe9"):
        next(read_batches(str(csv), SourceSpec(format="csv"), ["request_id"]))
