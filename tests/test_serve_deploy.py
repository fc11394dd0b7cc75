"""pipelines/serve/runner.py start_in_window: at most `window` applications start at a time,
the next as soon as one runs, and a failure or a timeout names the application. Serve is
replaced by a fake whose applications run after a fixed number of status polls."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from pipelines.serve import runner


@pytest.fixture
def fake_serve(monkeypatch):
    """Applications that run `polls[name]` status checks after they were started (default 2)."""
    state = SimpleNamespace(started=[], left={}, polls={}, most_starting=0, failed=set())

    def run(targets):
        for t in targets:
            state.started.append(t.name)
            state.left[t.name] = state.polls.get(t.name, 2)

    def not_running(names):
        pending = {}
        for name in names:
            if name in state.failed:
                raise RuntimeError(f"application {name!r} is DEPLOY_FAILED")
            if state.left[name] > 0:
                state.left[name] -= 1
                pending[name] = "DEPLOYING"
        state.most_starting = max(state.most_starting, len(pending))
        return pending

    monkeypatch.setattr(runner, "_run", run)
    monkeypatch.setattr(runner, "_not_running", not_running)
    monkeypatch.setattr(runner.time, "sleep", lambda s: None)
    return state


def targets(*names):
    return [SimpleNamespace(name=n) for n in names]


def test_at_most_window_start_at_once_in_the_config_order(fake_serve):
    fake_serve.polls = {"b": 6}  # a slow one does not hold back the others
    runner.start_in_window(targets("a", "b", "c", "d", "e"), 2, timeout_s=60)
    assert fake_serve.started == ["a", "b", "c", "d", "e"]
    assert fake_serve.most_starting == 2
    assert not any(fake_serve.left.values())


def test_a_window_larger_than_the_config_starts_everything_at_once(fake_serve):
    runner.start_in_window(targets("a", "b", "c"), 1 << 30, timeout_s=60)
    assert fake_serve.most_starting == 3


def test_a_failed_application_stops_the_deploy_naming_it(fake_serve):
    fake_serve.failed = {"b"}
    with pytest.raises(RuntimeError, match="'b' is DEPLOY_FAILED"):
        runner.start_in_window(targets("a", "b", "c"), 2, timeout_s=60)
    assert fake_serve.started == ["a", "b"]  # nothing more is started after a failure


def test_a_timeout_names_what_is_not_running_and_what_never_started(fake_serve):
    fake_serve.polls = {"a": 10**9}
    with pytest.raises(RuntimeError, match=r"not running after 0s: \{'a': 'DEPLOYING', 'b': 'NOT_STARTED'\}"):
        runner.start_in_window(targets("a", "b"), 1, timeout_s=0)
