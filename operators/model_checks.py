"""Configuration checks that need the model's config or processor but never its weights.

`Operator.check_config()` calls these; the job driver, Serve replicas and direct users all
reach them through that one hook, so the knowledge of what a task needs lives here and in the
task operators, not in the pipelines.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from operators.base import Operator


def check_architecture(op: "Operator", auto_classes: Sequence[str] | None = None) -> None:
    """The checkpoint's config class is one that the task's auto classes load (default: the
    operator's `auto_model`), as `AutoModelFor<X>.from_pretrained` would decide it, but from
    the config alone: a text-classification checkpoint given to object-detection fails here,
    before any weights are read or any row is processed."""
    import transformers

    config = op.model_config
    if op.load_options.trust_remote_code and getattr(config, "auto_map", None):
        return  # remote code registers its own classes; transformers' mappings cannot tell
    classes = tuple(auto_classes or (op.auto_model,))
    if any(type(config) in getattr(transformers, name)._model_mapping for name in classes):
        return
    raise ValueError(
        f"model {op.model_id!r} is a {config.model_type!r} checkpoint ({type(config).__name__}) that "
        f"{' or '.join(classes)} cannot load; task {op.task!r} needs a model of that kind"
    )
