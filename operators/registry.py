"""The one explicit registry of task operators, keyed by transformers task id."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, TypeVar

if TYPE_CHECKING:
    from operators.base import Operator

_OPERATORS: dict[str, type["Operator"]] = {}
# task id -> variants of its operator, each picked per checkpoint by the task's operator
_VARIANTS: dict[str, list[type["Operator"]]] = {}

OperatorT = TypeVar("OperatorT", bound="type[Operator]")


def register_operator(task: str) -> Callable[[OperatorT], OperatorT]:
    """Class decorator: register an operator under its transformers task id.

    Raises on a duplicate id so that two modules can never silently shadow each other.
    """

    def wrap(cls: OperatorT) -> OperatorT:
        if task in _OPERATORS:
            raise ValueError(
                f"task {task!r} is already registered to {_OPERATORS[task].__qualname__}"
            )
        cls.task = task
        _OPERATORS[task] = cls
        return cls

    return wrap


def register_variant(task: str) -> Callable[[OperatorT], OperatorT]:
    """Class decorator: register a subclass of a task's operator as one of its variants.

    `get_operator(task)` still returns the task's class; constructing it with a checkpoint
    returns the first variant whose `serves(...)` accepts that checkpoint (the task's operator
    decides what it passes, e.g. its feature extractor). A variant lives in its own module
    under operators/tasks/ (which imports every module in it), so adding one changes no other file.
    """

    def wrap(cls: OperatorT) -> OperatorT:
        variants = _VARIANTS.setdefault(task, [])
        if cls in variants:
            raise ValueError(f"{cls.__qualname__} is already a variant of task {task!r}")
        variants.append(cls)
        return cls

    return wrap


def task_variants(task: str) -> list[type["Operator"]]:
    """The registered variants of a task's operator, in registration order."""
    return list(_VARIANTS.get(task, ()))


def list_tasks() -> list[str]:
    """Registered task ids, sorted."""
    return sorted(_OPERATORS)


def get_operator(task: str) -> type["Operator"]:
    """The operator class for a task id; an unknown id raises ValueError naming the known ones."""
    if not isinstance(task, str):
        raise TypeError(f"task must be a str, got {type(task).__name__}")
    try:
        return _OPERATORS[task]
    except KeyError:
        raise ValueError(
            f"unknown task {task!r}; known tasks: {', '.join(list_tasks())}"
        ) from None
