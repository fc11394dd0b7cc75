"""Shared by the generation tests (text-generation, summarization, translation, bad input):
prompts of varied lengths, and a fixture that runs torch on one thread."""

import pytest

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "A function definition is an executable statement.",
    "Hi",
    "Exceptions are raised when an error is detected during execution; the handler may re-raise it "
    "or handle it and continue with the next statement after the try block, as described below.",
    "for loops iterate over sequences",
    "Numbers are created by numeric literals or as the result of built-in functions and operators.",
    "yes",
    "The import statement combines two operations: it searches for the named module, then binds it.",
    "Comparison operators chain arbitrarily.",
]


@pytest.fixture(scope="module", autouse=False)
def one_torch_thread():
    """Tiny models gain nothing from intra-op threads, and on this shared 2-core machine two
    spinning threads cost ~15x the CPU time of one (measured: 2.4 s vs 0.14 s for 9 prompts)."""
    import os

    import torch

    before = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"  # for the transformers 4.57 reference subprocess too
    yield
    torch.set_num_threads(before[0])
    if before[1] is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = before[1]
