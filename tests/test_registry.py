"""The task registry: lookups, errors, duplicates, and the `taskray tasks` listing."""

from __future__ import annotations

import pytest

from operators import get_operator, list_tasks, register_operator
from operators.base import Operator

ALL_TASKS = {
    "audio-classification", "automatic-speech-recognition", "image-classification",
    "object-detection", "image-segmentation", "depth-estimation", "text-classification",
    "token-classification", "question-answering", "feature-extraction", "text-generation",
    "summarization", "translation",
}


def test_all_thirteen_tasks_registered():
    assert set(list_tasks()) == ALL_TASKS


def test_unknown_task_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown task 'nope'; known tasks: .*text-classification"):
        get_operator("nope")
    with pytest.raises(TypeError, match="got int"):
        get_operator(3)


def test_duplicate_registration_raises():
    with pytest.raises(ValueError, match="already registered"):
        register_operator("text-classification")(type("Dup", (Operator,), {}))


def test_every_operator_describes_itself():
    for task in list_tasks():
        info = get_operator(task).describe()
        assert info["task"] == task
        assert info["modality"] in {"text", "image", "audio"}
        assert info["inputs"] and info["outputs"][-1] == "error"


def test_unknown_option_is_rejected(tiny_model):
    with pytest.raises(ValueError, match="not_an_option"):
        get_operator("text-classification")(tiny_model("text-classification"), not_an_option=1)


def test_cli_lists_tasks(capsys):
    from pipelines.cli import main

    assert main(["tasks"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 13
    assert any(line.startswith("text-classification") and "out: label,score,scores,error" in line for line in lines)


def test_every_module_under_tasks_is_imported_and_registers_a_class():
    """operators/tasks/ imports each of its modules: a new task or variant is one new file."""
    import inspect
    import pkgutil
    import sys

    import operators.tasks
    from operators import get_operator, list_tasks
    from operators.registry import task_variants

    registered = {get_operator(t) for t in list_tasks()} | {v for t in list_tasks() for v in task_variants(t)}
    for module in pkgutil.iter_modules(operators.tasks.__path__):
        name = f"operators.tasks.{module.name}"
        assert name in sys.modules, name
        defined = {c for _, c in inspect.getmembers(sys.modules[name], inspect.isclass) if c.__module__ == name}
        assert defined & registered, f"{name} registers no operator or variant"
