"""What every kfp component of the project shares.

A component body imports the project package and calls one tested library
function. On Vertex AI, a Kubeflow Pipelines server and ``kfp.local``'s
DockerRunner the body runs in the project image; under ``kfp.local``'s
SubprocessRunner it runs in the current virtual environment, where the project
is installed. So no component installs packages at run time::

    @ranker_component
    def train_mmoe(examples: Input[Dataset], model: Output[Model]) -> None:
        from trainer.train import train_from_component
        ...
"""

from __future__ import annotations

import copy
import functools

from kfp import dsl

# The project image as `make image` tags it. The image a pipeline runs in is a compile-time
# setting (`--image`, env RANKER_IMAGE) that `pipelines/pipeline.py` sets on every task.
DEFAULT_IMAGE = "mmoe-ranker:latest"

ranker_component = functools.partial(dsl.component, base_image=DEFAULT_IMAGE, install_kfp_package=False)


def with_image(component: dsl.base_component.BaseComponent, image: str) -> dsl.base_component.BaseComponent:
    """A copy of ``component`` that runs in ``image`` (for factories that read the image from the component)."""
    copied = copy.deepcopy(component)
    copied.component_spec.implementation.container.image = image
    return copied
