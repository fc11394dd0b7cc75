"""Logits to scores and labels, as transformers' classification pipelines compute them.

text-classification calls TextClassificationPipeline.postprocess itself (operators/text_inputs.py
`pipeline_steps`). The image and audio classifiers still use this copy of the same rule
(Image/AudioClassificationPipeline.postprocess could replace it the same way); their tests hold
these scores to the pipelines.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=axis, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def class_scores(logits: np.ndarray, config: Any, function: str = "default") -> np.ndarray:
    """Apply the scoring function pipeline() would: sigmoid for multi-label or one label,
    softmax for single-label, identity for regression."""
    if function == "default":
        problem = getattr(config, "problem_type", None)
        if problem == "regression":
            function = "none"
        elif problem == "multi_label_classification" or config.num_labels == 1:
            function = "sigmoid"
        else:
            function = "softmax"
    logits = np.asarray(logits, dtype=np.float32)
    if function == "softmax":
        return softmax(logits)
    if function == "sigmoid":
        return sigmoid(logits)
    if function == "none":
        return logits
    raise ValueError(f"function_to_apply must be default, softmax, sigmoid or none, got {function!r}")


def top_labels(scores: np.ndarray, id2label: dict, top_k: int | None) -> dict[str, Any]:
    """`label` and `score` of the best class, and `scores` (top_k of them) when top_k is set."""
    order = np.argsort(-scores, kind="stable")
    best = int(order[0])
    row: dict[str, Any] = {"label": id2label[best], "score": float(scores[best])}
    if top_k is not None:
        row["scores"] = [{"label": id2label[int(i)], "score": float(scores[i])} for i in order[:top_k]]
    return row
