"""Make tiny random heads useful as oracles.

A random classifier gives nearly the same label for every input, so parity over it proves
little. We re-centre and re-scale a head's outputs on features from a few calibration inputs,
so that each class's logit has zero mean and a spread of `scale` over those inputs: labels then
vary with the input.
"""

from __future__ import annotations

import torch


@torch.no_grad()
def recenter_linear(linear: torch.nn.Linear, features: torch.Tensor, scale: float = 3.0) -> None:
    """Rescale `linear` in place so its outputs on `features` (N x in) are centred, spread `scale`."""
    features = features.reshape(-1, features.shape[-1]).to(linear.weight.dtype)
    out = features @ linear.weight.T + (linear.bias if linear.bias is not None else 0)
    mean = out.mean(dim=0)
    std = out.std(dim=0).clamp_min(1e-6)
    linear.weight.mul_((scale / std)[:, None])
    if linear.bias is None:
        raise ValueError("recenter_linear needs a Linear with a bias")
    linear.bias.copy_((linear.bias - mean) * scale / std)


def calibration_texts() -> list[str]:
    """Varied English sentences for calibrating text heads."""
    from tiny_models.tokenizers import corpus

    texts = []
    for doc in corpus()[:40]:
        for para in doc.split("\n\n"):
            para = " ".join(para.split())
            if 20 < len(para) < 400:
                texts.append(para)
                break
    return texts
