"""Point-in-time aggregates: hand-computed values, and nothing from the same timestamp or later leaks in."""

import numpy as np
import pandas as pd
import pytest

from components.data.spec import load_dataset_spec
from components.features.history import (
    Entity,
    Timeline,
    add_match_features,
    entity_history,
    history_entities,
    prior_events,
    smoothed_rates,
)
from ranker_core.schema import MODULE, TIMESTAMP, label_key


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
        list(rng.choice(["art", "toys"], size)),
    )
    cutoff = 25
    later = frame[TIMESTAMP] >= cutoff
    perturbed = frame.copy()
    perturbed.loc[later, label_key("click")] = 1 - perturbed.loc[later, label_key("click")]
    for entity in (Entity("user", ("user_id",)), Entity("user_category", ("user_id", "category"))):
        before = entity_history(frame, entity, ("click",), Timeline.of(frame, ("click",), None), 10.0)
        after = entity_history(perturbed, entity, ("click",), Timeline.of(perturbed, ("click",), None), 10.0)
        visible = frame[TIMESTAMP] <= cutoff  # rows AT the cutoff must not see the cutoff's labels either
        pd.testing.assert_frame_equal(before[visible], after[visible])
        assert not before[~visible].equals(after[~visible])  # the perturbation is visible later on


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
