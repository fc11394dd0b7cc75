"""Fixtures for the checkpoint-configuration tier: tiny models that rebuild the published
configuration of well-known hub checkpoints (tiny_models/checkpoints.py), built once
per session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def checkpoint_model(tiny_models_dir):
    """checkpoint_model(hub_id) -> the directory of the tiny model standing for hub_id."""
    from tiny_models.checkpoints import build_checkpoint_model

    def build(hub_id: str) -> str:
        return build_checkpoint_model(hub_id, tiny_models_dir)

    return build
