"""Several server processes on one port (``ranker serve --workers N``, ``RANKER_WORKERS``).

One server process decodes and parses every request on one event loop, which
holds the GIL while it does: under load that loop, not the model, is what
saturates (docs/benchmarks.md, "Issue 13: several server processes"). With
``workers`` > 1 this process binds the port and starts that many worker
processes (fresh interpreters); each loads the model and runs the whole server
(:func:`serving.server.serve`) on the listening socket it inherited, and the
kernel hands each new connection to a worker that is accepting::

    serve_workers(ServerConfig.from_env(model_uri="work_dir/model", workers=2))   # blocks; the exit code

- **Metrics**: the workers count into one ``prometheus_client`` multiprocess
  directory (``PROMETHEUS_MULTIPROC_DIR``: a fresh temporary one unless it is set),
  and ``/metrics``, whichever worker answers, reports the sum over all of them.
- **Stopping**: SIGTERM or SIGINT is passed to every worker; each finishes its
  requests in flight (``grace_period_s``) and this process exits 0.
- **A worker that dies** stops the others and this process exits 1, so the
  platform (Kubernetes, Vertex AI) restarts the container as it would a crashed server.

Each worker holds its own copy of the model (memory grows with ``workers``) and
its own micro-batcher and feature cache.

Hand-written because the supervisors that exist start an app by its import
string in every process (uvicorn's and KServe's ``--workers``, gunicorn), so a
worker would serve KServe's bare app without this server's model, routes and
guards; here each worker runs the same :func:`~serving.server.serve` as one process does.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess

from serving.config import ServerConfig
from serving.observability import METRICS_DIR_ENV

logger = logging.getLogger(__name__)

BACKLOG = 2048


def serve_workers(config: ServerConfig, log_level: int = logging.INFO) -> int:
    """Serve with ``config.workers`` processes on ``config.http_port`` until SIGTERM/SIGINT; the exit code."""
    metrics_dir = os.environ.get(METRICS_DIR_ENV) or ""
    own_metrics_dir = not metrics_dir
    if own_metrics_dir:
        metrics_dir = os.environ[METRICS_DIR_ENV] = tempfile.mkdtemp(prefix="ranker-metrics-")
    listener = socket.create_server(("0.0.0.0", config.http_port), backlog=BACKLOG)
    try:
        workers = _start(config, log_level, listener)
    finally:
        listener.close()  # the workers hold their own copies
    logger.info(
        "serving on port %d with %d worker processes (pids %s)",
        config.http_port,
        len(workers),
        ", ".join(str(worker.pid) for worker in workers),
    )
    try:
        return _supervise(workers)
    finally:
        if own_metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _start(config: ServerConfig, log_level: int, listener: socket.socket) -> list[BaseProcess]:
    # spawn, not fork: a forked child would inherit this process's threads and TensorFlow state.
    context = multiprocessing.get_context("spawn")
    one_process = config.model_copy(update={"workers": 1})
    workers = [
        context.Process(target=_worker, args=(one_process, log_level, listener), name=f"ranker-worker-{index}")
        for index in range(config.workers)
    ]
    for worker in workers:
        worker.start()
    return workers


def _worker(config: ServerConfig, log_level: int, listener: socket.socket) -> None:
    """One worker process: the whole server on the inherited listening socket."""
    from serving.server import serve

    raise SystemExit(serve(config, log_level, listen_fd=listener.fileno()))


def _supervise(workers: list[BaseProcess]) -> int:
    """Wait for the workers; pass SIGTERM/SIGINT on; if one dies unasked, stop the rest. The exit code."""
    stopping = False

    def stop(signum: int, _frame: object = None) -> None:
        nonlocal stopping
        stopping = True
        _terminate(workers)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop)
    failed = False
    running = {worker.sentinel: worker for worker in workers}
    while running:
        for sentinel in wait(list(running), timeout=1.0):
            worker = running.pop(sentinel)
            worker.join()
            _forget_metrics_of(worker)
            if not stopping:
                name, pid, code = worker.name, worker.pid, worker.exitcode
                logger.error("worker %s (pid %d) exited with code %s: stopping the others", name, pid, code)
                failed = stopping = True
                _terminate(list(running.values()))
    return 1 if failed else 0


def _terminate(workers: list[BaseProcess]) -> None:
    for worker in workers:
        if worker.is_alive():
            worker.terminate()  # SIGTERM: the worker's server finishes its requests in flight, then exits


def _forget_metrics_of(worker: BaseProcess) -> None:
    from prometheus_client import multiprocess

    if worker.pid is not None:
        multiprocess.mark_process_dead(worker.pid)
