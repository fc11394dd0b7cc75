"""pipelines/local_ray.py: the Ray taskray starts on this machine, retried only when it missed
Ray's fixed start-up window. ray.init is replaced here: nothing is started."""

from __future__ import annotations

import pytest

from pipelines.local_ray import LOCAL_RAY_SYSTEM_CONFIG, START_ATTEMPTS, start_local_ray

TIMEOUT = Exception("The current node timed out during startup. This could happen because some of the raylet failed to startup or the GCS has become overloaded.")


@pytest.fixture
def fake_ray(monkeypatch):
    """ray.init that fails with the queued errors, then succeeds; returns the calls' kwargs."""
    import ray

    calls, errors, shutdowns = [], [], []

    def init(**kwargs):
        calls.append(kwargs)
        if errors:
            raise errors.pop(0)

    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "shutdown", lambda: shutdowns.append(1))
    return calls, errors, shutdowns


def test_a_start_that_missed_the_window_is_retried(fake_ray):
    calls, errors, shutdowns = fake_ray
    errors.append(TIMEOUT)
    start_local_ray(num_cpus=2, namespace="serve")
    assert len(calls) == 2 and len(shutdowns) == 1  # the half-started Ray is stopped first
    assert calls[1] == {
        "address": "local", "num_cpus": 2, "namespace": "serve", "include_dashboard": False,
        "_system_config": LOCAL_RAY_SYSTEM_CONFIG,
    }


def test_retries_are_bounded_and_other_failures_are_not_retried(fake_ray):
    calls, errors, _ = fake_ray
    errors.extend([TIMEOUT] * START_ATTEMPTS)
    with pytest.raises(Exception, match="timed out during startup"):
        start_local_ray()
    assert len(calls) == START_ATTEMPTS
    calls.clear(), errors.clear()
    errors.append(ValueError("num_cpus must be a non-negative integer"))
    with pytest.raises(ValueError):
        start_local_ray(num_cpus=-1)
    assert len(calls) == 1


def test_settings_given_are_added_to_the_local_ones(fake_ray):
    calls, _, _ = fake_ray
    start_local_ray(include_dashboard=True, _system_config={"object_timeout_milliseconds": 10})
    assert calls[0]["include_dashboard"] is True
    assert calls[0]["_system_config"] == {**LOCAL_RAY_SYSTEM_CONFIG, "object_timeout_milliseconds": 10}
