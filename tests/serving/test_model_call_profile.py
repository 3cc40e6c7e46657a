"""``bench_model_call --ops``: where one serving call's time goes, by op type and by layer."""

from __future__ import annotations

import pytest

from benchmarks.bench_model_call import layer_of, op_times, synthetic_columns


def test_a_node_belongs_to_the_two_scopes_below_the_keras_model():
    assert layer_of("StatefulPartitionedCall/StatefulPartitionedCall/ranker_model/mmoe/gate_click/logits/MatMul") == (
        "mmoe/gate_click"
    )
    assert layer_of("ranker_model/features/numeric/concat") == "features/numeric"
    assert layer_of("StatefulPartitionedCall/ranker_model_1/mmoe/expert_3_cross/cross_0/MatMul") == (
        "mmoe/expert_3_cross"
    )  # the second model a process built
    assert layer_of("StatefulPartitionedCall/not_ranker_model/dense/MatMul") == "(signature)"
    assert layer_of("_arg_serving_default_price_0_7") == "(signature)"


def test_the_profile_of_a_served_model_splits_its_kernels_by_op_type_and_by_layer(model_dir):
    times = op_times(model_dir, synthetic_columns(model_dir, 50), calls=3, op_threads=1)

    assert sum(times.by_layer.values()) == pytest.approx(sum(times.by_op.values()))
    # the default experts (three MLPs and a cross network), a gate and a tower per task
    assert {"mmoe/expert_0_mlp", "mmoe/expert_3_cross", "mmoe/gate_click", "mmoe/tower_purchase"} <= set(times.by_layer)
    assert any("MatMul" in op for op in times.by_op)
    assert times.ops_per_call > 100
    assert times.session_cpu_ms > 0
    report = times.format(top=3).splitlines()
    assert len(report) == 1 + 2 * (1 + 3)  # the totals, then a heading and 3 rows per table
