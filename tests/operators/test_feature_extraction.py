"""feature-extraction: parity with pipeline (mean of token states) and with sentence-transformers
on the real all-MiniLM-L6-v2 checkpoint."""

from __future__ import annotations

import numpy as np
import pytest

from operators import get_operator
from tests.operators.texts import VARIED_TEXTS

EMBED_TOL = 1e-5  # fp32 on CPU; batched padding changes summation order only


@pytest.fixture(scope="module")
def model_dir(tiny_model):
    return tiny_model("feature-extraction")


def test_parity_with_pipeline_mean_of_token_states(model_dir):
    from transformers import pipeline

    reference = pipeline("feature-extraction", model=model_dir, device="cpu")
    op = get_operator("feature-extraction")(model_dir, max_batch_rows=3)
    out = op({"text": VARIED_TEXTS})
    assert out["error"] == [None] * len(VARIED_TEXTS)
    for i, text in enumerate(VARIED_TEXTS):
        tokens = np.asarray(reference(text)[0], dtype=np.float32)  # (seq, hidden), unpadded
        np.testing.assert_allclose(out["embedding"][i], tokens.mean(axis=0), atol=EMBED_TOL)


def test_normalize_option(model_dir):
    op = get_operator("feature-extraction")(model_dir, normalize=True)
    out = op({"text": VARIED_TEXTS[:3]})
    for vector in out["embedding"]:
        assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)


def test_real_minilm_matches_sentence_transformers(minilm_path):
    from sentence_transformers import SentenceTransformer

    op = get_operator("feature-extraction")(minilm_path, max_batch_rows=4)
    assert op.normalize, "all-MiniLM-L6-v2 ships a Normalize module"
    out = op({"text": VARIED_TEXTS})
    assert out["error"] == [None] * len(VARIED_TEXTS)
    reference = SentenceTransformer(minilm_path, device="cpu").encode(VARIED_TEXTS, batch_size=1)
    np.testing.assert_allclose(np.asarray(out["embedding"]), reference, atol=EMBED_TOL)
    # real semantics: paraphrases are closer than unrelated sentences
    a, b, c = op({"text": ["A cat sits on the mat.", "A kitten is sitting on a rug.", "Stock markets fell sharply today."]})["embedding"]
    assert np.dot(a, b) > np.dot(a, c) + 0.2


def test_bad_rows_are_isolated(model_dir):
    op = get_operator("feature-extraction")(model_dir)
    out = op({"text": [VARIED_TEXTS[0], None, "", 3.5, VARIED_TEXTS[1]]})
    assert [e is None for e in out["error"]] == [True, False, False, False, True]
    assert out["error"][1:4] == ["input: expected text as str, got None", "input: empty text", "input: expected text as str, got float"]
    clean = op({"text": [VARIED_TEXTS[0], VARIED_TEXTS[1]]})
    np.testing.assert_allclose(out["embedding"][0], clean["embedding"][0], atol=EMBED_TOL)
    np.testing.assert_allclose(out["embedding"][4], clean["embedding"][1], atol=EMBED_TOL)


def test_cpu_token_budget_is_per_torch_thread_of_the_calling_thread(model_dir):
    """512 tokens per thread on the CPU (1 thread: 512 beat 1024; 2 threads: 1024 beat 512),
    read in the calling thread, where forward_calls set its share; the option overrides."""
    import threading

    import torch

    op = get_operator("feature-extraction")(model_dir, device="cpu")
    budgets = {}

    def budget_on(threads: int) -> None:
        torch.set_num_threads(threads)  # this thread's count only
        budgets[threads] = op.token_budget

    for threads in (1, 2):
        t = threading.Thread(target=budget_on, args=(threads,))
        t.start()
        t.join()
    assert budgets == {1: 512, 2: 1024}
    assert op.with_options(batch_budget=300).token_budget == 300


@pytest.mark.parametrize("padding_side", ["right", "left"])
@pytest.mark.parametrize("include_prompt", [True, False])
def test_pooling_math_matches_sentence_transformers_pooling(padding_side, include_prompt):
    """Every pooling mode, alone and all six concatenated, against sentence-transformers'
    Pooling module on the same token states, under right and left padding, with a 2-token
    prompt that include_prompt=False leaves out (a 1-token row is then fully masked)."""
    import torch
    from sentence_transformers.sentence_transformer.modules import Pooling

    from operators.sentence_modules import POOLING_MODES, PoolingModule, pool

    torch.manual_seed(0)
    lengths, seq_len, hidden = [7, 3, 5, 1], 7, 8
    token_embeddings = torch.randn(len(lengths), seq_len, hidden)
    mask = torch.zeros(len(lengths), seq_len, dtype=torch.int64)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1 if padding_side == "right" else 0
        if padding_side == "left":
            mask[i, seq_len - n :] = 1
    prompt_length = 2
    for modes in [*((m,) for m in POOLING_MODES), POOLING_MODES]:
        reference = Pooling(hidden, pooling_mode=modes, include_prompt=include_prompt)(
            {"token_embeddings": token_embeddings, "attention_mask": mask, "prompt_length": prompt_length}
        )["sentence_embedding"]
        prompt_lengths = torch.full((len(lengths),), prompt_length)
        got = pool(token_embeddings, mask, prompt_lengths, PoolingModule(modes, include_prompt))
        torch.testing.assert_close(torch.cat(got, dim=-1), reference, rtol=1e-6, atol=1e-6, msg=f"{modes}")
