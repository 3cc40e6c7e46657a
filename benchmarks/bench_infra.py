"""Image build time and size, DockerRunner's per-step overhead and the serving container's cold start.

Needs a Docker engine (``infra/start_dockerd.sh`` starts one). Examples::

    python -m benchmarks.bench_infra                          # rebuild (cached), sizes, per-step overhead
    python -m benchmarks.bench_infra --model-dir work_dir/model  # ... and the serving image's cold start
    python -m benchmarks.bench_infra --no-cache               # a full rebuild (minutes, ~3 GB of wheels)
"""

# No `from __future__ import annotations`: kfp reads the benchmark component's real annotations.
import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from components.base import DEFAULT_IMAGE, ranker_component

ROOT = Path(__file__).resolve().parents[1]
RANKER_IMAGE = os.environ.get("RANKER_IMAGE", DEFAULT_IMAGE)
SERVING_IMAGE = os.environ.get("SERVING_IMAGE", "mmoe-ranker-serving:latest")
DEPS_IMAGE = os.environ.get("DEPS_IMAGE", "mmoe-ranker-deps:latest")
LOCAL_BASE_IMAGE = os.environ.get("LOCAL_BASE_IMAGE", "mmoe-ranker-base:bookworm")


@dataclasses.dataclass
class Row:
    """One measurement: what, how much, in which unit."""

    what: str
    value: float
    unit: str


@ranker_component
def noop_step(text: str) -> str:
    """A step that does nothing but what every step does: start, import the project, return."""
    import trainer  # noqa: F401  (the import every real step pays)

    return text


def build_seconds(no_cache: bool) -> float:
    env = {**os.environ, "RANKER_IMAGE": RANKER_IMAGE, "SERVING_IMAGE": SERVING_IMAGE}
    if no_cache:
        env["DOCKER_BUILD_OPTS"] = f"{env.get('DOCKER_BUILD_OPTS', '')} --no-cache".strip()
    started = time.perf_counter()
    subprocess.run([str(ROOT / "infra" / "build_images.sh")], env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def image_sizes() -> list[Row]:
    rows = []
    for image in (LOCAL_BASE_IMAGE, DEPS_IMAGE, RANKER_IMAGE, SERVING_IMAGE):
        result = subprocess.run(
            ["docker", "image", "inspect", "-f", "{{.Size}}", image], capture_output=True, text=True
        )
        if result.returncode == 0:
            rows.append(Row(f"size of {image}", int(result.stdout) / 2**30, "GiB"))
    return rows


def step_seconds(runner_name: str, repeats: int) -> float:
    """Mean wall time of one ``noop_step`` under a kfp.local runner."""
    from kfp import local

    runner = (
        local.DockerRunner(user=f"{os.getuid()}:{os.getgid()}")
        if runner_name == "docker"
        else local.SubprocessRunner(use_venv=False)
    )
    with tempfile.TemporaryDirectory() as root:
        local.init(runner=runner, pipeline_root=root, enable_caching=False, raise_on_error=True)
        started = time.perf_counter()
        for repeat in range(repeats):
            assert noop_step(text=str(repeat)).output == str(repeat)
        return (time.perf_counter() - started) / repeats


def serving_cold_start(model_dir: Path, timeout_s: float = 300) -> float:
    """Seconds from `docker run` of the serving image to its health route answering 200."""
    mount = f"{model_dir.resolve()}:/model:ro"
    command = ["docker", "run", "-d", "--rm", "-p", "127.0.0.1::8080", "-v", mount, "-e", "AIP_STORAGE_URI=/model"]
    started = time.perf_counter()
    container = subprocess.run(
        [*command, SERVING_IMAGE],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    try:
        port = subprocess.run(["docker", "port", container, "8080"], check=True, capture_output=True, text=True)
        url = f"http://127.0.0.1:{port.stdout.splitlines()[0].rsplit(':', 1)[1]}/health"
        while time.perf_counter() - started < timeout_s:
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return time.perf_counter() - started
            except OSError:
                time.sleep(0.25)
        raise TimeoutError(f"the serving container was not ready within {timeout_s}s")
    finally:
        subprocess.run(["docker", "rm", "-f", container], capture_output=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-cache", action="store_true", help="rebuild every layer (the cold build)")
    parser.add_argument("--repeats", type=int, default=3, help="steps per runner for the overhead [3]")
    parser.add_argument("--model-dir", type=Path, help="an exported ranker: also measure the serving cold start")
    args = parser.parse_args(argv)

    rows = [Row(f"build_images.sh ({'no cache' if args.no_cache else 'cached'})", build_seconds(args.no_cache), "s")]
    rows += image_sizes()
    for runner in ("subprocess", "docker"):
        rows.append(
            Row(f"one no-op step, {runner} runner (mean of {args.repeats})", step_seconds(runner, args.repeats), "s")
        )
    if args.model_dir:
        rows.append(Row("serving image: docker run -> /health 200", serving_cold_start(args.model_dir), "s"))

    width = max(len(row.what) for row in rows)
    print(f"{'measurement':<{width}}  {'value':>8}  unit")
    for row in rows:
        print(f"{row.what:<{width}}  {row.value:>8.2f}  {row.unit}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
