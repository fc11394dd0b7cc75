"""ThreadShare: the torch threads of an actor's forward calls, split among those running."""

from __future__ import annotations

import threading

import pytest

from operators.threads import ThreadShare


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """`running()` sets the calling thread's torch threads; give the next tests theirs back."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_running_calls_split_the_threads_and_never_go_below_their_own():
    share = ThreadShare(per_call=1, calls=2)
    assert share.threads_now() == 2  # nothing running: a call starting now gets both
    with share.running():
        assert share.threads_now() == 2
        with share.running():
            assert share.threads_now() == 1
        assert share.threads_now() == 2
    wide = ThreadShare(per_call=2, calls=3)
    with wide.running(), wide.running():
        assert wide.threads_now() == 3
        with wide.running(), wide.running():  # more than forward_calls: never under per_call
            assert wide.threads_now() == 2


def test_a_failed_call_stops_counting():
    share = ThreadShare(per_call=1, calls=2)
    with pytest.raises(RuntimeError), share.running():
        raise RuntimeError("forward failed")
    with share.running():
        assert share.threads_now() == 2


def test_fit_sets_only_the_calling_threads_count():
    import torch

    share = ThreadShare(per_call=1, calls=2)
    before = torch.get_num_threads()
    seen = []

    def call():
        with share.running():
            share.fit()  # as the operator does before each micro-batch
            seen.append(torch.get_num_threads())

    t = threading.Thread(target=call)
    t.start()
    t.join()
    assert seen == [2]
    assert torch.get_num_threads() == before


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError):
        ThreadShare(per_call=0, calls=2)
