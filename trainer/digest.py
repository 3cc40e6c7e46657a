"""What identifies an exported model: the digest of its files, and the record of a judged model.

The evaluation writes :func:`judged_model` of the model it judged into
``blessing.json``; the registry recomputes :func:`model_digest` of the model it
is asked to register and refuses it when the two differ::

    model_digest("work/model")      # "3f2a..." (SHA-256, 64 hex digits)
    judged_model("work/model")
    # {"model_digest": "3f2a...", "saved_model_fingerprint": "1234/5678/...", "feature_spec_sha256": "9c1e..."}

Local folders (and ``gs://`` ones where Cloud Storage FUSE mounts them under
``/gcs``) are read without TensorFlow; other remote URIs, and the SavedModel
fingerprint, import TensorFlow when needed (seconds), never at import time.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ranker_core.cli_support import InvalidValueError, MissingInputError
from ranker_core.schema import FEATURE_SPEC_FILE

GCS_FUSE_ROOT = "/gcs"
FINGERPRINT_FILE = "fingerprint.pb"


def judged_model(model_uri: str) -> dict[str, str]:
    """The identity of the model in ``model_uri``, as the blessing records it.

    ``model_digest`` (every file, see :func:`model_digest`) is what registration
    checks; ``saved_model_fingerprint`` (TensorFlow's own, ``""`` when the
    SavedModel has none) and ``feature_spec_sha256`` (``""`` without a feature
    spec) say what the digest covers. Example::

        blessing["judged_model"] = judged_model("work/model")
    """
    spec_path = f"{model_uri.rstrip('/')}/{FEATURE_SPEC_FILE}"
    return {
        "model_digest": model_digest(model_uri),
        "saved_model_fingerprint": saved_model_fingerprint(model_uri),
        "feature_spec_sha256": json_sha256(read_json(spec_path)) if path_exists(spec_path) else "",
    }


def model_digest(model_uri: str) -> str:
    """SHA-256 over every file's relative path and bytes: the same model gives the same digest."""
    digest = hashlib.sha256()
    for relative, opener in _model_files(model_uri):
        digest.update(relative.encode() + b"\0")
        with opener() as handle:
            for chunk in iter(lambda handle=handle: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def saved_model_fingerprint(model_uri: str) -> str:
    """TensorFlow's fingerprint of the SavedModel (its ``singleprint``), ``""`` when there is none to read."""
    if not path_exists(f"{model_uri.rstrip('/')}/{FINGERPRINT_FILE}"):
        return ""
    import tensorflow as tf

    try:
        return tf.saved_model.experimental.read_fingerprint(model_uri).singleprint()
    except FileNotFoundError:  # what TensorFlow raises for an invalid fingerprint file too
        return ""


def json_sha256(data: Any) -> str:
    """SHA-256 of a JSON document in canonical form (sorted keys), e.g. of a feature spec."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def local_view(uri: str) -> str | None:
    """A local path for ``uri``: itself, or ``/gcs/...`` for ``gs://...`` where Cloud Storage FUSE is mounted.

    Vertex AI Pipelines mounts every bucket under ``/gcs``; elsewhere a
    ``gs://`` URI is read through ``tf.io.gfile`` (returns ``None``).
    """
    if "://" not in uri:
        return uri
    if uri.startswith("gs://") and Path(GCS_FUSE_ROOT).is_dir():
        return f"{GCS_FUSE_ROOT}/{uri.removeprefix('gs://')}"
    return None


def read_json(path: str) -> Any:
    """A JSON file, local or remote; the error names the file."""
    try:
        local = local_view(path)
        if local is not None:
            return json.loads(Path(local).read_text())
        import tensorflow as tf

        with tf.io.gfile.GFile(path) as handle:
            return json.load(handle)
    except json.JSONDecodeError as error:
        raise InvalidValueError(f"{path} is not valid JSON: {error}") from error
    except (FileNotFoundError, IsADirectoryError):
        raise MissingInputError(f"no file at {path}") from None


def path_exists(path: str) -> bool:
    """Whether a local or remote file or folder exists."""
    local = local_view(path)
    if local is not None:
        return Path(local).exists()
    import tensorflow as tf

    return tf.io.gfile.exists(path)


def is_folder(path: str) -> bool:
    """Whether ``path`` is a local or remote folder."""
    local = local_view(path)
    if local is not None:
        return Path(local).is_dir()
    import tensorflow as tf

    return tf.io.gfile.isdir(path)


def _model_files(model_uri: str) -> list[tuple[str, Any]]:
    """(relative path, opener) of every file under a local folder or a remote (gs://) one, sorted."""
    if not is_folder(model_uri):
        raise MissingInputError(f"no model folder at {model_uri}")
    local = local_view(model_uri)
    if local is not None:
        root = Path(local)
        files = sorted(path for path in root.rglob("*") if path.is_file())
        return [(path.relative_to(root).as_posix(), lambda path=path: path.open("rb")) for path in files]
    import tensorflow as tf

    root = model_uri.rstrip("/")
    found = []
    for folder, _, names in tf.io.gfile.walk(root):
        prefix = folder[len(root) :].strip("/")
        found += [f"{prefix}/{name}" if prefix else name for name in names]
    return [(name, lambda name=name: tf.io.gfile.GFile(f"{root}/{name}", "rb")) for name in sorted(found)]
