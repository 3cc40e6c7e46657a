"""Module-aware building blocks: experts, gates and towers.

Every block takes ``(inputs, module)`` and concatenates the module embedding
into the input of EVERY layer it holds, not only the first, so each layer can
condition on the surface the request came from. Pass ``module=None`` for the
module-free ablation (tests/trainer/test_model.py checks every layer's input)::

    expert = ModuleAwareMLP([64, 32], name="expert_0")
    outputs = expert(inputs, module)          # (batch, 32)
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf
import tensorflow_recommenders as tfrs


def with_module(inputs: tf.Tensor, module: tf.Tensor | None) -> tf.Tensor:
    """``inputs`` with the module embedding appended (unchanged when ``module`` is None)."""
    return inputs if module is None else tf.concat([inputs, module], axis=-1)


class ModuleAwareMLP(tf.keras.layers.Layer):
    """A ReLU MLP whose every Dense layer also sees the module embedding.

    ``output_activation=None`` makes the last layer linear (a tower's logit).

    Example::

        tower = ModuleAwareMLP([16, 1], output_activation=None, name="tower_click")
        logits = tower(mixed_experts, module)     # (batch, 1)
    """

    def __init__(
        self,
        units: Sequence[int],
        output_activation: str | None = "relu",
        dropout: float = 0.0,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        activations = ["relu"] * (len(units) - 1) + [output_activation]
        self.dense_layers = [
            tf.keras.layers.Dense(width, activation=activation, name=f"dense_{index}")
            for index, (width, activation) in enumerate(zip(units, activations, strict=True))
        ]
        self.dropout = tf.keras.layers.Dropout(dropout) if dropout > 0 else None
        self.output_width = int(units[-1])

    def call(self, inputs: tf.Tensor, module: tf.Tensor | None = None, training: bool | None = None) -> tf.Tensor:
        hidden = inputs
        for index, dense in enumerate(self.dense_layers):
            hidden = dense(with_module(hidden, module))
            if self.dropout is not None and index < len(self.dense_layers) - 1:
                hidden = self.dropout(hidden, training=training)
        return hidden


class CrossExpert(tf.keras.layers.Layer):
    """A DCN-v2 cross network (``tfrs.layers.dcn.Cross``) projected to the experts' output width.

    ``x0 = [inputs, module]`` enters every cross layer (``x_{l+1} = x0 * (W x_l + b) + x_l``),
    and the output projection sees the module again.

    Example::

        expert = CrossExpert(num_layers=2, output_width=32, name="expert_3")
        expert(inputs, module).shape   # (batch, 32)
    """

    def __init__(self, num_layers: int, output_width: int, projection_dim: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.cross_layers = [
            tfrs.layers.dcn.Cross(projection_dim=projection_dim, name=f"cross_{index}") for index in range(num_layers)
        ]
        self.projection = tf.keras.layers.Dense(output_width, activation="relu", name="projection")
        self.output_width = int(output_width)

    def call(self, inputs: tf.Tensor, module: tf.Tensor | None = None, training: bool | None = None) -> tf.Tensor:
        x0 = with_module(inputs, module)
        crossed = x0
        for layer in self.cross_layers:
            crossed = layer(x0, crossed)
        return self.projection(with_module(crossed, module))


class Gate(tf.keras.layers.Layer):
    """A softmax gate over experts: ``softmax(Dense([inputs, module]) / temperature)``; with
    ``module_only``, ``softmax(Dense(module) / temperature)`` (the inputs when there is no module).

    Example::

        gate = Gate(num_experts=4, temperature=1.0, name="gate_click")
        weights = gate(inputs, module)   # (batch, 4), rows sum to 1
    """

    def __init__(self, num_experts: int, temperature: float = 1.0, module_only: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.temperature = float(temperature)
        self.module_only = module_only
        self.logits = tf.keras.layers.Dense(num_experts, name="logits")

    def call(self, inputs: tf.Tensor, module: tf.Tensor | None = None) -> tf.Tensor:
        source = module if self.module_only and module is not None else with_module(inputs, module)
        return tf.nn.softmax(self.logits(source) / self.temperature, axis=-1)


def mix_experts(expert_outputs: Sequence[tf.Tensor], weights: tf.Tensor) -> tf.Tensor:
    """The gate-weighted sum of expert outputs: ``sum_e weights[:, e] * expert_outputs[e]``."""
    stacked = tf.stack(list(expert_outputs), axis=1)  # (batch, experts, width)
    return tf.einsum("be,bew->bw", weights, stacked)


def make_expert(
    expert_type: str,
    units: Sequence[int],
    cross_layers: int = 2,
    projection_dim: int | None = None,
    dropout: float = 0.0,
    name: str | None = None,
) -> ModuleAwareMLP | CrossExpert:
    """An expert of the given type ("mlp" or "cross") whose output width is ``units[-1]``.

    Example::

        make_expert("cross", [64, 32], cross_layers=2, name="expert_3").output_width   # 32
    """
    if expert_type == "cross":
        return CrossExpert(cross_layers, units[-1], projection_dim, name=name)
    if expert_type == "mlp":
        return ModuleAwareMLP(units, dropout=dropout, name=name)
    raise ValueError(f"unknown expert type {expert_type!r} (mlp or cross)")
