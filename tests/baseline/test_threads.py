import os
import subprocess
import sys

CHECK = "import os, components.baseline; print(os.environ['OMP_WAIT_POLICY'])"


def _policy_after_import(environ):
    done = subprocess.run([sys.executable, "-c", CHECK], env=environ, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_importing_the_baseline_makes_openmp_threads_wait_passively():
    environ = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    assert _policy_after_import(environ) == "PASSIVE"


def test_an_openmp_wait_policy_already_set_wins():
    assert _policy_after_import({**os.environ, "OMP_WAIT_POLICY": "ACTIVE"}) == "ACTIVE"
