"""Fixtures for the offline reliability tests; the helpers they use live in harness.py."""

from __future__ import annotations

import os
from typing import Callable, Iterator

import pytest

from tests.offline_reliability.harness import Driver, own_ray
from tests.s3_server import S3Endpoint, s3_endpoint


PACKAGE = os.path.dirname(os.path.abspath(__file__))


def pytest_collection_modifyitems(items):
    # This package's tests that do not use job_ray run before the first that does: once up, that
    # Ray stays up, idle, until the package ends, and beside it a driver test with Rays of its
    # own ran slower (the resume/retry test: 73 s alone, 86 s after the Lance test had started
    # job_ray). A stable sort in place: every other test keeps its position, and each module's
    # tests their order.
    slots = [i for i, item in enumerate(items) if str(item.fspath).startswith(PACKAGE + os.sep)]
    mine = sorted((items[i] for i in slots), key=lambda item: "job_ray" in item.fixturenames)
    for i, item in zip(slots, mine):
        items[i] = item


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


@pytest.fixture(scope="package")
def s3() -> Iterator[S3Endpoint]:
    """moto on 127.0.0.1 behind a fault proxy, with bucket `taskray-test` and AWS_* set."""
    with s3_endpoint("taskray-test", proxied=True) as endpoint:
        yield endpoint


@pytest.fixture(scope="package")
def job_ray(s3) -> Iterator[None]:
    """One local Ray for the jobs these tests run in-process (test_retry_failed, test_s3_job):
    starting one costs seconds of CPU. Its workers inherit the S3 endpoint's AWS_* variables
    from this process (set by the `s3` fixture before Ray starts), although taskray pickles an
    explicit filesystem: Ray Data's own S3 access (checkpoint filter) must reach moto too.
    test_cluster_nodes, which runs first, owns a Cluster instead."""
    with own_ray(num_cpus=2):
        yield
