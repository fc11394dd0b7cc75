"""automatic-speech-recognition (CTC) with facebook/wav2vec2-base-960h's published
configuration (tiny_models/checkpoints.py): group norm in the conv encoder and a
feature extractor without attention mask, so zero padding would change the answer. Clips of
different lengths in one call must give what transformers.pipeline gives one clip at a time.

Stands for: facebook/wav2vec2-base-960h and -base-100h, and the other "group"-norm base
checkpoints fine-tuned for CTC (no attention mask).
"""

from __future__ import annotations

import numpy as np
import pytest

from operators import get_operator
from tests.operators import sounds

TASK = "automatic-speech-recognition"


@pytest.fixture(scope="module")
def model_dir(checkpoint_model):
    return checkpoint_model("facebook/wav2vec2-base-960h")


@pytest.fixture(scope="module")
def clips() -> list[np.ndarray]:
    """Clips of 5 lengths, two pairs of equal length (those may share a micro-batch)."""
    varied = sounds.varied_clips()
    return [varied[0], varied[1], varied[1][::-1].copy(), varied[3], varied[4][: sounds.RATE], varied[5][: sounds.RATE]]


def test_published_settings(model_dir):
    op = get_operator(TASK)(model_dir)
    assert op.processor.return_attention_mask is False
    assert op.config.feat_extract_norm == "group" and op.config.do_stable_layer_norm is False
    assert op.config.vocab_size == 32 and op.config.pad_token_id == 0
    assert not op.padding_is_exact, "group norm: padding changes the output"


def test_batched_clips_of_different_lengths_match_pipeline(model_dir, clips):
    from transformers import pipeline

    asr = pipeline(TASK, model=model_dir, device="cpu")
    op = get_operator(TASK)(model_dir, max_batch_rows=8)
    lengths = [len(c) for c in clips]
    batches = op.plan_waveforms(lengths)
    assert all(len({lengths[i] for i in batch}) == 1 for batch in batches), "only equal lengths share a batch"
    assert any(len(batch) > 1 for batch in batches)
    out = op({"audio": clips})
    assert out["error"] == [None] * len(clips)
    for i, clip in enumerate(clips):
        assert out["text"][i] == asr(clip)["text"], f"clip {i}"
    assert all(out["text"]) and len(set(out["text"])) > 3, "texts should vary with the clip"
    assert set("".join(out["text"])) <= set(" ETAONIHSRDLUMWCFGYPBVK'XJQZ")


def test_zero_padding_would_change_the_answer(model_dir, clips):
    """Why equal lengths: the same clip, zero-padded as a mixed batch would pad it, reads
    differently, so grouping by length is what keeps the parity above."""
    import torch

    op = get_operator(TASK)(model_dir).load()
    short, long = min(clips, key=len), max(clips, key=len)
    with torch.inference_mode():
        single = op.processor(short, sampling_rate=16_000, return_tensors="np")["input_values"]
        alone = op.model(op.to_device(single)).logits
        inputs = op.processor([short, long], sampling_rate=16_000, padding=True, return_tensors="np")
        batched = op.model(op.to_device(inputs["input_values"])).logits[0, : alone.shape[1]]
    assert not torch.allclose(alone[0], batched, atol=1e-3)
