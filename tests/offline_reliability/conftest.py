"""Fixtures for the offline reliability tests: an S3 endpoint with fault injection, a Ray of
their own (local or a multi-node `ray.cluster_utils.Cluster`), and driver subprocesses that
can be SIGKILLed together with every Ray process they started.

Each module here owns its Ray: a module fixture shuts down whatever Ray the process holds
(for example a session-scoped one from another module) before starting its own, and shuts its
own down in teardown even when a test failed, so that modules never collide.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from typing import Callable, Iterator

import pytest

from tests.s3_server import S3Endpoint, s3_endpoint

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.2) -> None:
    """Poll `predicate` until it holds; fail the test naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(interval_s)


@contextlib.contextmanager
def own_ray(**init_kwargs) -> Iterator[None]:
    """A local Ray for one module: any Ray this process already holds is shut down first."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    init_kwargs.setdefault("include_dashboard", False)
    # "local" always starts a fresh instance, even when RAY_ADDRESS or a `ray start` elsewhere
    # on this machine would otherwise make ray.init() attach to someone else's cluster.
    ray.init(address="local", **init_kwargs)
    try:
        yield
    finally:
        ray.shutdown()


@contextlib.contextmanager
def own_cluster(head: dict, workers: list[dict], env_vars: dict | None = None):
    """A `ray.cluster_utils.Cluster` with the driver connected; always torn down on exit."""
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"include_dashboard": False, **head})
    try:
        for args in workers:
            cluster.add_node(**args)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, runtime_env={"env_vars": env_vars} if env_vars else None)
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


class Driver:
    """A job driver in its own process group, which a test can SIGKILL mid-job.

    `kill()` SIGKILLs the group and every descendant seen just before (raylet, GCS and the
    workers of the Ray it started live in other process groups), then waits for all of them
    to be gone, so that no stray Ray outlives the test.
    """

    def __init__(self, argv: list[str], env: dict[str, str] | None = None, log_path: str | None = None) -> None:
        self.argv = argv
        self.log_path = log_path
        self._log = open(log_path, "wb") if log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env={**os.environ, **(env or {})},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout_s: float) -> int:
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise TimeoutError(f"driver {self.argv} still running after {timeout_s}s; killed it") from None
        finally:
            self._close_log()

    def kill(self) -> list[int]:
        """SIGKILL the driver and everything it started; return the pids that were killed."""
        import psutil

        try:
            tree = [psutil.Process(self.proc.pid), *psutil.Process(self.proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            tree = []
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        for p in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        _, alive = psutil.wait_procs(tree, timeout=15)
        self.proc.wait(timeout=5)
        self._close_log()
        if alive:
            raise RuntimeError(f"processes survived SIGKILL: {[p.pid for p in alive]}")
        return [p.pid for p in tree]

    def output(self) -> str:
        if not self.log_path:
            return ""
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def _close_log(self) -> None:
        if self._log is not subprocess.DEVNULL and not self._log.closed:
            self._log.close()


@pytest.fixture
def spawn_driver(tmp_path) -> Iterator[Callable[..., Driver]]:
    """spawn_driver(argv, env=None) -> Driver; every driver still alive at teardown is killed."""
    drivers: list[Driver] = []

    def spawn(argv: list[str], env: dict[str, str] | None = None) -> Driver:
        d = Driver(argv, env=env, log_path=str(tmp_path / f"driver-{len(drivers)}.log"))
        drivers.append(d)
        return d

    yield spawn
    for d in drivers:
        if d.alive():
            d.kill()


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Endpoint]:
    """moto on 127.0.0.1 behind a fault proxy, with bucket `taskray-test` and AWS_* set."""
    with s3_endpoint("taskray-test", proxied=True) as endpoint:
        yield endpoint
