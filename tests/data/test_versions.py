"""The data's version, the extraction's cache key: it moves when the files or the table change, and only then."""

import datetime
import os
import types

import pytest

from components.data.versions import data_version


def test_a_folder_glob_or_file_keeps_its_version_until_a_file_changes(tmp_path):
    logs = tmp_path / "logs"
    (logs / "day=1").mkdir(parents=True)
    (logs / "day=1" / "a.parquet").write_bytes(b"one")
    glob = str(logs / "day=1" / "*.parquet")
    first = {uri: data_version(uri) for uri in (str(logs), f"{logs}/", glob, glob.replace("*", "a"))}
    assert len(set(first.values())) == len(first) and all(len(version) == 16 for version in first.values())
    assert {uri: data_version(uri) for uri in first} == first  # nothing changed: the cache may be reused

    (logs / "day=2").mkdir()
    (logs / "day=2" / "b.parquet").write_bytes(b"two")  # a new day's files below the folder
    assert data_version(str(logs)) != first[str(logs)]
    assert data_version(glob) == first[glob]  # the glob does not match them
    os.utime(logs / "day=1" / "a.parquet", (0, 0))  # rewritten in place: same size, another update time
    assert data_version(glob) != first[glob]


def test_a_table_is_versioned_by_its_last_change_and_an_unreadable_source_never_reuses_the_cache(monkeypatch, caplog):
    from google.cloud import bigquery

    modified = datetime.datetime(2026, 12, 1, 3, tzinfo=datetime.UTC)
    asked = []

    class FakeClient:  # the network boundary: one tables.get call
        def __init__(self, project: str) -> None:
            self.project = project

        def get_table(self, table_id: str):
            asked.append((self.project, table_id))
            return types.SimpleNamespace(modified=modified, num_rows=1000)

    monkeypatch.setattr(bigquery, "Client", FakeClient)
    version = data_version("bq://my-project.crm.impressions")
    assert asked == [("my-project", "my-project.crm.impressions")]
    assert data_version("bq://my-project.crm.impressions") == version
    modified += datetime.timedelta(days=1)  # refilled overnight
    assert data_version("bq://my-project.crm.impressions") != version

    assert data_version("") == ""
    missing = [data_version("/no/such/logs/*.parquet") for _ in range(2)]
    assert missing[0].startswith("unversioned-") and missing[0] != missing[1]
    assert "cannot read the version of /no/such/logs/*.parquet" in caplog.text


@pytest.mark.parametrize("failure", [PermissionError("403 Forbidden"), OSError("no credentials")])
def test_a_table_whose_metadata_cannot_be_read_gets_a_fresh_version(monkeypatch, failure):
    from google.cloud import bigquery

    def refuse(*_args, **_kwargs):
        raise failure

    monkeypatch.setattr(bigquery, "Client", refuse)
    assert data_version("bq://p.d.t").startswith("unversioned-")
