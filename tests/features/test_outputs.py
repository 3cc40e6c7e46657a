"""What an extraction run clears before it starts, on a local disk and on an object store.

On GCS a folder is only a name prefix: ``exists`` is false for it and no single delete removes it.
:class:`ObjectStore` is a Beam file system with those semantics, kept in memory: it fakes the storage
service only, so the project's own clearing code runs as it would against ``gs://``.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from apache_beam.io.filesystem import CompressionTypes, FileMetadata, FileSystem

from components.features.pipeline import SPILL_DIR, ExtractionConfig, clear_outputs, remove_spilled_shards
from components.features.snapshot import SNAPSHOT_DIR
from ranker_core.schema import FEATURE_SPEC_FILE


class _Upload(io.BytesIO):
    """A write stream whose bytes become an object when it closes, as an upload does."""

    def __init__(self, objects: dict[str, bytes], path: str) -> None:
        super().__init__()
        self.objects, self.path = objects, path

    def close(self) -> None:
        if not self.closed:
            self.objects[self.path] = self.getvalue()
        super().close()


class ObjectStore(FileSystem):
    """``objstore://`` paths: flat object names, no folders, like GCS (Beam finds it by its scheme)."""

    objects: dict[str, bytes] = {}

    @classmethod
    def scheme(cls) -> str:
        return "objstore"

    def join(self, basepath: str, *paths: str) -> str:
        return "/".join([basepath.rstrip("/"), *(path.strip("/") for path in paths)])

    def split(self, path: str) -> tuple[str, str]:
        head, _, tail = path.rpartition("/")
        return head, tail

    def mkdirs(self, path: str) -> None:  # no folders to make
        pass

    def has_dirs(self) -> bool:
        return False

    def _list(self, prefix: str) -> Iterator[FileMetadata]:
        for name, data in sorted(self.objects.items()):
            if name.startswith(prefix):
                yield FileMetadata(name, len(data), 0.0)

    def create(self, path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO):
        return _Upload(self.objects, path)

    def open(self, path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO):
        return io.BytesIO(self.objects[path])

    def copy(self, sources, destinations) -> None:
        for source, destination in zip(sources, destinations, strict=True):
            self.objects[destination] = self.objects[source]

    def rename(self, sources, destinations) -> None:
        for source, destination in zip(sources, destinations, strict=True):
            self.objects[destination] = self.objects.pop(source)

    def exists(self, path: str) -> bool:
        return path in self.objects  # an object, never a prefix

    def size(self, path: str) -> int:
        return len(self.objects[path])

    def last_updated(self, path: str) -> float:
        return 0.0

    def checksum(self, path: str) -> str:
        return str(hash(self.objects[path]))

    def metadata(self, path: str) -> FileMetadata:
        return FileMetadata(path, self.size(path), 0.0)

    def delete(self, paths) -> None:
        for path in paths:  # like GCS: a path ending in "/" deletes the prefix, any other the object, if any
            names = [name for name in self.objects if name.startswith(path)] if path.endswith("/") else [path]
            for name in names:
                self.objects.pop(name, None)


@pytest.fixture
def store():
    ObjectStore.objects = {}
    yield ObjectStore.objects
    ObjectStore.objects = {}


STALE = (
    FEATURE_SPEC_FILE,
    "train/part-00000-of-00004.tfrecord.gz",
    "eval/part-00003-of-00004.tfrecord.gz",
    "heldout/part-00001-of-00004.tfrecord.gz",
    f"{SNAPSHOT_DIR}/users.parquet",
    "dead_letter/dead_letter-00000-of-00001.jsonl",
    f"{SPILL_DIR}/shard-00002.pkl",
)
KEPT = ("notes.txt", "training/model.txt", "trainer/eval/log.txt")  # not extraction's: near names survive


def test_an_object_store_run_clears_every_earlier_output_and_nothing_else(store):
    for name in STALE + KEPT:
        store[f"objstore://bucket/examples/{name}"] = b"stale"
    clear_outputs(ExtractionConfig("objstore://bucket/raw", "simulator", "objstore://bucket/examples"))
    assert sorted(store) == sorted(f"objstore://bucket/examples/{name}" for name in KEPT)


def test_spilled_shards_on_an_object_store_are_removed_and_a_second_removal_is_no_error(store):
    store["objstore://bucket/examples/_spill/shard-00000.pkl"] = b"rows"
    store["objstore://bucket/examples/_spill/shard-00001.pkl"] = b"rows"
    remove_spilled_shards("objstore://bucket/examples/")
    remove_spilled_shards("objstore://bucket/examples")
    assert store == {}


def test_a_local_run_clears_every_earlier_output_and_nothing_else(tmp_path):
    out = tmp_path / "examples"
    for name in STALE + KEPT:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text("stale")
    clear_outputs(ExtractionConfig(str(tmp_path / "raw"), "simulator", str(out)))
    left = sorted(str(path.relative_to(out)) for path in out.rglob("*") if path.is_file())
    assert left == sorted(KEPT)
    assert not (out / "train").exists() and not (out / SPILL_DIR).exists()
