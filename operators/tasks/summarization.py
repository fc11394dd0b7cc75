"""summarization: `summary_text` from an encoder-decoder model (BART, T5).

transformers 5 removed the summarization pipeline; this follows transformers 4.57's: T5's
"summarize: " prefix and settings from `task_specific_params["summarization"]`, the model's
generation config, defaults max_new_tokens=256 and num_beams=4 for what it leaves unset, and
a warning when max_length is not below the input length. See operators.generation.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from operators.generation import GenerationOperator, GenerationOptions
from operators.registry import register_operator
from operators.results import ResponseShape, one_record
import pyarrow as pa

logger = logging.getLogger(__name__)


@register_operator("summarization")
class SummarizationOperator(GenerationOperator):
    output_columns = ("summary_text",)
    output_types = {"summary_text": pa.string()}
    response = ResponseShape(one_record("summary_text"), unwrap_in_list=True)
    auto_model = "AutoModelForSeq2SeqLM"
    Options = GenerationOptions
    pipeline_defaults = {"max_new_tokens": 256, "num_beams": 4}

    def task_params_key(self) -> str | None:
        return "summarization"

    def check_lengths(self, input_length: int) -> None:
        """The pipeline's advisory checks, logged (once per operator) rather than per call."""
        min_length, max_length = self.resolved("min_length"), self.resolved("max_length")
        if getattr(self, "_length_warned", False) or max_length is None:
            return
        if min_length is not None and max_length < min_length:
            logger.warning("min_length=%d exceeds max_length=%d", min_length, max_length)
            self._length_warned = True
        elif input_length < max_length and self.resolved("max_new_tokens") is None:
            logger.warning(
                "max_length=%d but an input has only %d tokens; summaries are usually shorter than their "
                "input, consider a smaller max_length", max_length, input_length
            )
            self._length_warned = True

    def postprocess_row(self, raw: np.ndarray, features: dict[str, Any]) -> dict[str, Any]:
        return {"summary_text": self.decode(raw)}
