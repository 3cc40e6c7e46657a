"""Names shared by the feature-store writer (``ranker materialize``) and its reader (``ranker serve``)."""

FEATURE_SERVICE = "ranker"  # the Feast FeatureService holding every feature view the model reads
DEFAULT_TAG = "default"  # a field tag: the value training gives an entity with no history
MATCH_TAG = "match"  # a service tag: JSON list of [request column, stored column] equality flags
MODEL_VERSION_TAG = "model_version"  # a view and service tag: the registered model version
MATCH_PREFIX = "match_"
SNAPSHOT_DIR = "entities"  # <examples>/entities/: each entity's features as of the cutoff
SNAPSHOT_FILE = "snapshot.json"  # the cutoff, the entities and their defaults


def match_feature(left: str, right: str) -> str:
    """The feature that flags ``left == right`` (both non-empty)."""
    return f"{MATCH_PREFIX}{left}_{right}"
