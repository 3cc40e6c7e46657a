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

import functools
import os

from kfp import dsl

# The project image; `make image` builds it and CI pushes it to Artifact Registry.
RANKER_IMAGE = os.environ.get("RANKER_IMAGE", "mmoe-ranker:latest")

ranker_component = functools.partial(dsl.component, base_image=RANKER_IMAGE, install_kfp_package=False)
