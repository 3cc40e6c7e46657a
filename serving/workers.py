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
  directory (``PROMETHEUS_MULTIPROC_DIR``, a fresh temporary one per start),
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
import sys
import tempfile
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess

from serving.config import ServerConfig
from serving.observability import METRICS_DIR_ENV

logger = logging.getLogger(__name__)

BACKLOG = 2048
USER_ERROR = 2  # the exit status of a user error, as from `ranker`


def serve_workers(config: ServerConfig, log_level: int = logging.INFO) -> int:
    """Serve with ``config.workers`` processes on ``config.http_port`` until SIGTERM/SIGINT; the exit code."""
    try:
        listener = socket.create_server(("0.0.0.0", config.http_port), backlog=BACKLOG)
    except OSError as error:
        logger.error("cannot listen on port %d: %s", config.http_port, error)
        return 1
    # A fresh directory, whatever this process inherited: importing Feast sets PROMETHEUS_MULTIPROC_DIR
    # to a directory of its own, which other servers started from the same process would share.
    metrics_dir = os.environ[METRICS_DIR_ENV] = tempfile.mkdtemp(prefix="ranker-metrics-")
    try:
        return Supervisor(config, log_level).run(listener)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


class Supervisor:
    """Starts the worker processes on ``listener``, passes SIGTERM/SIGINT on, and stops them all when one dies."""

    def __init__(self, config: ServerConfig, log_level: int) -> None:
        self.config, self.log_level = config, log_level
        self.workers: list[BaseProcess] = []
        self.stopping = False
        self.failed_status = 0  # a worker that died unasked: 2 for a user error (all workers share it), else 1

    def run(self, listener: socket.socket) -> int:
        """Serve until stopped; the exit code (1 when a worker died unasked)."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self.stop)
        try:
            self._start(listener)
        finally:
            listener.close()  # the workers hold their own copies
        if self.stopping:  # a signal came while the workers started: stop the last one too
            self.stop()
        pids = ", ".join(str(worker.pid) for worker in self.workers)
        logger.info(
            "serving on port %d with %d worker processes (pids %s)", self.config.http_port, len(self.workers), pids
        )
        running = {worker.sentinel: worker for worker in self.workers}
        while running:
            for sentinel in wait(list(running), timeout=1.0):
                self._ended(running.pop(sentinel))
        return self.failed_status

    def stop(self, _signum: int = signal.SIGTERM, _frame: object = None) -> None:
        """SIGTERM to every worker: each finishes its requests in flight, then exits."""
        self.stopping = True
        for worker in self.workers:
            if worker.is_alive():
                worker.terminate()

    def _start(self, listener: socket.socket) -> None:
        # spawn, not fork: a forked child would inherit this process's threads and TensorFlow state.
        context = multiprocessing.get_context("spawn")
        one_process = self.config.model_copy(update={"workers": 1})
        for index in range(self.config.workers):
            if self.stopping:  # a signal came while the others started
                return
            worker = context.Process(
                target=_worker, args=(one_process, self.log_level, listener), name=f"ranker-worker-{index}"
            )
            worker.start()
            self.workers.append(worker)

    def _ended(self, worker: BaseProcess) -> None:
        from prometheus_client import multiprocess

        worker.join()
        multiprocess.mark_process_dead(worker.pid)
        if not self.stopping:
            name, pid, code = worker.name, worker.pid, worker.exitcode
            logger.error("worker %s (pid %d) exited with code %s: stopping the others", name, pid, code)
            self.failed_status = self.failed_status or (USER_ERROR if code == USER_ERROR else 1)
            self.stop()


def _worker(config: ServerConfig, log_level: int, listener: socket.socket) -> None:
    """One worker process: the whole server on the inherited listening socket; a user error (a model or feature
    store that cannot be opened) is one line and exit status 2, as from a single process."""
    from ranker_core.cli_support import UserError
    from serving.server import serve

    try:
        status = serve(config, log_level, listen_fd=listener.fileno())
    except UserError as error:
        print(f"ranker serve: {error}", file=sys.stderr)
        status = USER_ERROR
    raise SystemExit(status)
