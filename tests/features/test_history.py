"""Point-in-time aggregates: hand-computed values, and nothing from the same timestamp or later leaks in."""

import numpy as np
import pandas as pd
import pytest

from components.data.spec import SequenceSpec, load_dataset_spec
from components.features.history import (
    Entity,
    Timeline,
    add_match_features,
    entity_history,
    history_entities,
    prior_events,
    recent_positives,
    sequence_at,
    smoothed_rates,
)
from ranker_core.feature_store import sequence_hits
from ranker_core.schema import MODULE, TIMESTAMP, label_key
from tests.data.impressions import simulator_spec_with


def test_prior_events_by_hand():
    keys = np.array([0, 0, 0, 1, 0, 1])
    timestamps = np.array([5, 1, 1, 3, 9, 3])
    labels = np.array([[1, 0], [1, 1], [0, 0], [1, 1], [0, 0], [0, 0]])
    counts, positives = prior_events(keys, timestamps, labels)
    # key 0: t=1 (two rows) sees nothing; t=5 sees both t=1 rows; t=9 sees t=1, t=1 and t=5.
    # key 1: both rows share t=3, so neither sees the other.
    assert counts.tolist() == [2, 0, 0, 0, 3, 0]
    assert positives.tolist() == [[1, 1], [0, 0], [0, 0], [0, 0], [2, 1], [0, 0]]


def test_smoothing_pulls_small_counts_to_the_prior():
    rates = smoothed_rates(np.array([0, 10, 1000]), np.array([[0], [5], [500]]), np.array([[0.1]] * 3), 10.0)
    assert rates[:, 0].tolist() == pytest.approx([0.1, 0.3, 501 / 1010])


def frame_of(timestamps, users, clicks, categories=None) -> pd.DataFrame:
    return pd.DataFrame(
        {
            TIMESTAMP: timestamps,
            "user_id": users,
            "category": categories or ["art"] * len(users),
            label_key("click"): clicks,
            MODULE: "search",
        }
    )


def test_timeline_gives_point_in_time_global_priors():
    frame = frame_of([10, 10, 20, 30], ["a", "b", "a", "b"], [1, 1, 0, 0])
    halves = [Timeline.of(frame.iloc[:2], ("click",), None), Timeline.of(frame.iloc[2:], ("click",), None)]
    timeline = Timeline.merge(halves, 1)
    assert timeline.timestamps.tolist() == [10, 20, 30] and timeline.rows.tolist() == [2, 1, 1]
    # Laplace start: (positives + 1) / (rows + 2) of everything strictly before.
    assert timeline.prior_rates(np.array([10, 20, 30, 31]))[:, 0].tolist() == pytest.approx([0.5, 0.75, 0.6, 0.5])


def test_entity_history_by_hand():
    frame = frame_of([10, 10, 20, 30], ["a", "b", "a", "a"], [1, 1, 0, 1])
    timeline = Timeline.of(frame, ("click",), None)
    user = Entity("user", ("user_id",))
    features = entity_history(frame, user, ("click",), timeline, prior_strength=2.0)
    assert features["hist_user_impressions"].tolist() == [0, 0, 1, 2]
    prior_20, prior_30 = 3 / 4, 3 / 5  # global before t=20: 2 of 2 clicks; before t=30: 2 of 3
    expected = [0.5, 0.5, (1 + 2 * prior_20) / (1 + 2), (1 + 2 * prior_30) / (2 + 2)]
    assert features["hist_user_click_rate"].tolist() == pytest.approx(expected)


def test_changing_later_labels_never_changes_earlier_features():
    rng = np.random.default_rng(0)
    size = 400
    frame = frame_of(
        list(rng.integers(0, 50, size)),
        list(rng.choice(["a", "b", "c"], size)),
        list(rng.integers(0, 2, size)),
        list(rng.choice(["art", "toys", "books", "games"], size)),
    )
    cutoff = 25
    later = frame[TIMESTAMP] >= cutoff
    perturbed = frame.copy()
    perturbed.loc[later, label_key("click")] = 1 - perturbed.loc[later, label_key("click")]
    perturbed.loc[frame[TIMESTAMP] > cutoff, "category"] = "future"  # the rows' own keys stay as they were
    with_sequence = Entity("user", ("user_id",), (sequence_spec(),))
    for entity in (Entity("user", ("user_id",)), Entity("user_category", ("user_id", "category")), with_sequence):
        before = entity_history(frame, entity, ("click",), Timeline.of(frame, ("click",), None), 10.0)
        after = entity_history(perturbed, entity, ("click",), Timeline.of(perturbed, ("click",), None), 10.0)
        visible = frame[TIMESTAMP] <= cutoff  # rows AT the cutoff must not see the cutoff's labels either
        pd.testing.assert_frame_equal(before[visible], after[visible])
        assert not before[~visible].equals(after[~visible])  # the perturbation is visible later on
    sequences = before[sequence_spec().feature]
    assert after.loc[~visible, sequence_spec().feature].str.contains("future").any()
    assert sequences.str.split("|").map(len).max() == 3


def test_split_boundaries_fall_between_timestamps():
    frame = frame_of(list(range(10)) * 10, ["a"] * 100, [0] * 100)
    timeline = Timeline.of(frame, ("click",), None)
    assert timeline.split_boundaries(0.1, 0.1) == (8, 9)
    assert timeline.split_boundaries(0.2, 0.0) == (8, 10)  # no test rows: test starts after the last timestamp
    heldout = frame.assign(**{MODULE: np.where(frame[TIMESTAMP] >= 5, "email", "search")})
    assert Timeline.of(heldout, ("click",), "email").split_boundaries(0.2, 0.2) == (3, 4)


def test_spec_entities_and_match_flags():
    spec = load_dataset_spec("simulator")
    names = [entity.name for entity in history_entities(spec)]
    assert names == ["listing_id", "shop_id", "category", "user", "user_category"]
    frame = pd.DataFrame({"query_category": ["art", "", "toys"], "category": ["art", "", "art"]})
    frame["anchor_category"] = ""
    add_match_features(frame, spec)
    assert frame["match_query_category_category"].tolist() == [1.0, 0.0, 0.0]
    assert frame["match_anchor_category_category"].tolist() == [0.0, 0.0, 0.0]
    assert history_entities(load_dataset_spec("kuairand")) == []


def test_bucketed_timelines_stay_point_in_time():
    frame = frame_of([0, 59, 60, 61, 125], ["a"] * 5, [1, 1, 0, 1, 0])
    timeline = Timeline.of(frame, ("click",), None, resolution=60)
    assert timeline.timestamps.tolist() == [0, 60, 120] and timeline.rows.tolist() == [2, 2, 1]
    # t=59 sees nothing (its own minute is excluded), t=61 sees only the first minute, t=125 both.
    priors = timeline.prior_rates(np.array([59, 61, 125]))[:, 0]
    assert priors.tolist() == pytest.approx([1 / 2, 3 / 4, 4 / 6])
    assert timeline.split_boundaries(0.2, 0.2) == (60, 120)
    with pytest.raises(ValueError, match="different resolutions"):
        Timeline.merge([timeline, Timeline.of(frame, ("click",), None)], 1)


def test_recent_positives_by_hand():
    keys = np.array([0, 0, 0, 0, 1, 0, 0])
    timestamps = np.array([1, 2, 2, 3, 1, 4, 4])
    positive = np.array([1, 1, 1, 0, 1, 1, 0])
    values = np.array(["a", "c", "b", "d", "x", "", "e"])
    # t=2 sees only t=1; at t=3 the two t=2 positives come in value order (c after b), most recent first;
    # the empty value at t=4 is no token; key 1 never sees key 0.
    assert recent_positives(keys, timestamps, positive, values, length=5) == [
        "",
        "a",
        "a",
        "c|b|a",
        "",
        "c|b|a",
        "c|b|a",
    ]
    assert recent_positives(keys, timestamps, positive, values, length=2)[3] == "c|b"


def test_recent_positives_do_not_depend_on_row_order():
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"key": rng.integers(0, 5, 300), "t": rng.integers(0, 30, 300),
                          "positive": rng.integers(0, 2, 300), "value": rng.choice(list("abcdef"), 300)})  # fmt: skip

    def sequences(rows: pd.DataFrame) -> pd.Series:
        found = recent_positives(*(rows[c].to_numpy() for c in ("key", "t", "positive", "value")), length=4)
        return pd.Series(found, index=rows.index).sort_index()

    shuffled = frame.sample(frac=1.0, random_state=2)
    pd.testing.assert_series_equal(sequences(frame), sequences(shuffled))
    assert (sequences(frame) != "").mean() > 0.5


def sequence_spec(length: int = 3) -> SequenceSpec:
    return SequenceSpec(task="click", column="category", length=length)


def test_sequence_at_a_cutoff_is_what_an_impression_then_sees():
    frame = frame_of(
        [10, 20, 20, 30, 15], ["a", "a", "a", "a", "b"], [1, 1, 1, 0, 0], ["art", "toys", "books", "x", "y"]
    )
    at = sequence_at(frame, ("user_id",), sequence_spec(length=2), cutoff=40)
    assert at.to_dict() == {"a": "toys|books", "b": ""}
    per_row = entity_history(frame, Entity("user", ("user_id",), (sequence_spec(length=2),)), ("click",),
                             Timeline.of(frame, ("click",), None), 10.0)  # fmt: skip
    assert per_row[sequence_spec().feature].tolist() == ["", "art", "art", "toys|books", ""]


def test_a_sequence_match_counts_the_candidates_value_in_the_users_sequence(tmp_path):
    spec = load_dataset_spec(simulator_spec_with(tmp_path, sequences=[{"task": "click", "column": "category"}]))
    frame = pd.DataFrame({"query_category": "", "anchor_category": "", "category": ["art", "toys", "", "art"]})
    frame["hist_user_recent_click_category"] = ["art|toys|art", "art", "art", ""]
    add_match_features(frame, spec)
    assert frame["match_recent_click_category"].tolist() == [2.0, 0.0, 0.0, 0.0]
    assert sequence_hits(np.array(["a|b", None], dtype=object), ["b", "a"]).tolist() == [1.0, 0.0]


def test_sequence_hits_agrees_with_counting_each_row_alone():
    """Rows that share a sequence (a request's candidates) are counted from one cached split: same result."""
    rng = np.random.default_rng(0)
    shared = ["l1|l2|l1|l3", "l2", "", None]
    sequences = [shared[i] for i in rng.integers(0, len(shared), 500)]
    values = [("l1", "l2", "l3", "", None)[i] for i in rng.integers(0, 5, 500)]
    by_row = [
        str(s).split("|").count(str(v)) if s and v not in (None, "") else 0
        for s, v in zip(sequences, values, strict=True)
    ]
    assert sequence_hits(sequences, values).tolist() == by_row
    assert sum(by_row) > 0
