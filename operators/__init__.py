"""taskray task operators: Ray-agnostic, one class per transformers task.

    from operators import get_operator, list_tasks
    op = get_operator("image-classification")("google/vit-base-patch16-224")
    out = op({"image": [jpeg_bytes]})   # {"label": [...], "score": [...], ..., "error": [...]}
"""

from operators.base import Operator, OperatorOptions
from operators.errors import RowError
from operators.registry import get_operator, list_tasks, register_operator

from operators import tasks as _tasks  # noqa: F401  (registers every task operator)

__all__ = ["Operator", "OperatorOptions", "RowError", "get_operator", "list_tasks", "register_operator"]
