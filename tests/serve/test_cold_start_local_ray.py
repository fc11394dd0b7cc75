"""Serve cold start (issue 27, item 2): the local Ray that `taskray serve` starts runs no
dashboard, whose head and module processes start beside the Serve controller, proxy and
replicas (benchmarks/serve_cold_start.py measures it); a cluster it joins is left as it is."""

from __future__ import annotations

import argparse

import pytest

from pipelines.commands import serve as serve_command


class _Stop(Exception):
    pass


def _init_kwargs(monkeypatch, *argv: str) -> dict:
    import ray

    seen: dict = {}

    def init(**kwargs):
        seen.update(kwargs)
        raise _Stop  # nothing is started: only the arguments are checked

    monkeypatch.setattr(ray, "init", init)
    parser = argparse.ArgumentParser()
    serve_command.configure(parser)
    with pytest.raises(_Stop):
        serve_command.main(parser.parse_args(["--task", "text-classification", "--model", "m", *argv]))
    return seen


def test_a_local_ray_is_started_without_the_dashboard(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    seen = _init_kwargs(monkeypatch)
    assert seen["address"] == "local" and seen["include_dashboard"] is False


def test_a_cluster_it_joins_is_not_told_about_the_dashboard(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    seen = _init_kwargs(monkeypatch, "--address", "auto")
    assert seen["address"] == "auto" and "include_dashboard" not in seen
