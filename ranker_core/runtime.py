"""The process environment: what TensorFlow must see before it loads, and the cores this process may use.

TensorFlow Recommenders needs Keras 2, so ``TF_USE_LEGACY_KERAS`` is set before
anything in the process touches ``tf.keras``; TensorFlow's C++ start-up lines are
silenced. Every package that may load TensorFlow calls :func:`configure_tensorflow`
in its ``__init__``; values already set win.
"""

import os


def configure_tensorflow() -> None:
    """Set ``TF_USE_LEGACY_KERAS=1`` and ``TF_CPP_MIN_LOG_LEVEL=2`` unless already set."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS has one, else every core)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
