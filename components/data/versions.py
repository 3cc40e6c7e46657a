"""What identifies the contents behind a data URI, so that a pipeline's cache notices new data.

Vertex AI, Kubeflow Pipelines and ``kfp.local`` key a step's cache by its inputs, and a
data URI is only a name: a scheduled run on ``gs://bucket/logs/*.parquet`` or on a
BigQuery table refilled every night would reuse last week's extraction (and so
last week's model). The ``user_source`` step, never cached, hands extraction the
data's version as a parameter, so the extraction reruns when, and only when, the
data changed::

    data_version("gs://bucket/logs/")            # digest of every object's path, size and update time
    data_version("bq://p.crm.impressions")       # digest of the table's last modification and row count

A version that cannot be read (no credentials for BigQuery, say) is a fresh value
every time: the extraction runs again rather than trust a stale cache.
"""

from __future__ import annotations

import hashlib
import logging
import uuid

from components.data.readers import BIGQUERY_SCHEME, is_bigquery_uri, is_glob, matching_paths_metadata

logger = logging.getLogger(__name__)


def data_version(uri: str) -> str:
    """A short digest of what ``uri`` holds now (see the module doc); ``""`` for no URI."""
    if not uri:
        return ""
    try:
        parts = _table_state(uri) if is_bigquery_uri(uri) else _file_states(uri)
    except Exception as error:  # any failure means: do not trust a cached extraction of this URI
        logger.warning("cannot read the version of %s (%s): its extraction is not reused from the cache", uri, error)
        return f"unversioned-{uuid.uuid4().hex}"
    return hashlib.sha256("\n".join([uri, *parts]).encode()).hexdigest()[:16]


def _file_states(uri: str) -> list[str]:
    """``path size updated`` of each file the URI names: a glob's matches, a file, or every file below a folder."""
    has_glob = is_glob(uri)
    files = matching_paths_metadata(uri if has_glob else f"{uri.rstrip('/')}/**")
    if not files and not has_glob:
        files = matching_paths_metadata(uri)
    if not files:
        raise FileNotFoundError(f"no file matches {uri}")
    return sorted(f"{file.path} {file.size_in_bytes} {file.last_updated_in_seconds}" for file in files)


def _table_state(uri: str) -> list[str]:
    """The BigQuery table's last modification time and row count (one metadata call)."""
    from google.cloud import bigquery

    table_id = uri[len(BIGQUERY_SCHEME) :].replace(":", ".")
    table = bigquery.Client(project=table_id.split(".")[0]).get_table(table_id)
    return [table.modified.isoformat(), str(table.num_rows)]
