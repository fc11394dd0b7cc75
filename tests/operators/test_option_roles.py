"""Each option's role lives on its field (operators/base.py OPTION_ROLES), and every consumer
reads it there: with_options refuses to change a "model" option, a Serve request may set only
"request" options, and /info lists only those."""

from __future__ import annotations

import pytest

from operators import get_operator, list_tasks
from operators.base import OPTION_ROLES

SERVER = {"max_batch_rows", "batch_budget", "max_text_chars", "max_image_pixels", "max_batch_pixels",
          "max_seconds", "max_batch_samples"}


@pytest.mark.parametrize("task", list_tasks())
def test_every_option_has_a_known_role(task):
    options = get_operator(task).Options
    roles = {name: (field.json_schema_extra or {}).get("role", "request") for name, field in options.model_fields.items()}
    assert set(roles.values()) <= set(OPTION_ROLES), roles
    assert options.with_role("model") == {"attn_implementation", "torch_compile"}
    assert options.with_role("server") == SERVER & set(options.model_fields), task
    assert options.with_role(*OPTION_ROLES) == set(options.model_fields)
    # what a request may set means what an answer means: never a limit or the model's build
    assert not options.with_role("request") & (SERVER | {"attn_implementation", "torch_compile"})


def test_an_unknown_role_is_refused():
    with pytest.raises(ValueError, match="unknown option roles"):
        get_operator("text-classification").Options.with_role("client")


def test_with_options_keeps_model_options_fixed(tiny_model):
    op = get_operator("text-classification")(tiny_model("text-classification"))
    assert op.with_options(max_batch_rows=2).options.max_batch_rows == 2
    with pytest.raises(ValueError, match="torch_compile is fixed when the model loads"):
        op.with_options(torch_compile=True)
