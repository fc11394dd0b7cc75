"""translation: `translation_text` from an encoder-decoder model.

transformers 5 removed the translation pipeline; this follows transformers 4.57's:

* T5-style models: the prefix ("translate English to German: ") and generation settings from
  `task_specific_params["translation_<src>_to_<tgt>"]`; without src_lang/tgt_lang, the first
  translation entry there (as `pipeline("translation")` picks it).
* Multilingual tokenizers with language codes (mBART, mBART-50, NLLB, M2M100): `src_lang`
  sets the source code in the input and `tgt_lang` the forced first generated token, both
  from the tokenizer's own `_build_translation_inputs`, as the pipeline calls it, so each
  family keeps its convention (M2M100 takes 'de' and forces '__de__'; NLLB 'deu_Latn';
  mBART-50 'de_DE').

Defaults max_new_tokens=256 and num_beams=4 apply where the model sets neither.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np
from pydantic import Field

from operators.generation import GenerationOperator, GenerationOptions
from operators.registry import register_operator
from operators.results import ResponseShape, one_record
import pyarrow as pa

logger = logging.getLogger(__name__)
_TOKENIZER_LANGUAGE = threading.Lock()


class TranslationOptions(GenerationOptions):
    src_lang: str | None = Field(
        None, description="Source language: 'en' for T5 task params; for tokenizers with language codes, "
        "the code as the tokenizer takes it (mBART 'en_XX', NLLB 'eng_Latn', M2M100 'en')."
    )
    tgt_lang: str | None = Field(
        None, description="Target language: 'de' for T5 task params; for tokenizers with language codes, "
        "the code as the tokenizer takes it (mBART 'de_DE', NLLB 'deu_Latn', M2M100 'de')."
    )


@register_operator("translation")
class TranslationOperator(GenerationOperator):
    output_columns = ("translation_text",)
    output_types = {"translation_text": pa.string()}
    response = ResponseShape(one_record("translation_text"), unwrap_in_list=True)
    auto_model = "AutoModelForSeq2SeqLM"
    Options = TranslationOptions
    pipeline_defaults = {"max_new_tokens": 256, "num_beams": 4}

    @property
    def uses_language_codes(self) -> bool:
        return hasattr(self.processor, "_build_translation_inputs")

    def task_params_key(self) -> str | None:
        if self.uses_language_codes:
            return None
        known = [k for k in (getattr(self.model_config, "task_specific_params", None) or {}) if k.startswith("translation")]
        src, tgt = self.options.src_lang, self.options.tgt_lang
        if src is None and tgt is None:
            return known[0] if known else None
        if src is None or tgt is None:
            raise ValueError(
                f"give both src_lang and tgt_lang for model {self.model_id!r}, got src_lang={src!r}, tgt_lang={tgt!r}"
            )
        key = f"translation_{src}_to_{tgt}"
        if known and key not in known:
            # 4.57's pipeline would translate without a prefix here; a T5 model then does not
            # know which language to produce, so refuse instead.
            raise ValueError(f"model {self.model_id!r} has no task_specific_params for {key!r}; it has {known}")
        return key

    def check_config(self) -> None:
        """src_lang/tgt_lang name a translation of the model: language codes of its tokenizer
        (an unknown code would be encoded as the unknown token, a translation into no language
        at all), else a key of its task params. Checked before the generation settings, which
        an unknown forced BOS token would fail less clearly."""
        from operators.errors import option_error

        if self.uses_language_codes:
            check_language_codes(self.processor, self.options, self.model_id)
        else:
            try:
                self.task_params_key()
            except ValueError as e:
                raise option_error(type(self.options), "tgt_lang", self.options.tgt_lang, str(e)) from None
        super().check_config()

    def translation_inputs(self, texts: list[str], **kwargs: Any) -> dict[str, Any]:
        """The tokenizer's own `_build_translation_inputs`, as 4.57's TranslationPipeline calls
        it: the source code placed in the input and the target code's forced first token, in
        the family's own convention (M2M100 'de' -> '__de__', NLLB 'deu_Latn', mBART-50
        'de_DE'). Nothing here maps a code to a token by hand: that is where M2M100 went wrong."""
        # It sets the tokenizer's src_lang and then encodes: one call at a time, since
        # with_options copies (Serve requests) with other languages share the tokenizer.
        with _TOKENIZER_LANGUAGE:
            return self.processor._build_translation_inputs(
                texts, return_tensors=None, src_lang=self.options.src_lang, tgt_lang=self.options.tgt_lang, **kwargs
            )

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        if not self.uses_language_codes:
            return super().tokenize(texts)
        limit = self.max_input_tokens()
        encoded = self.translation_inputs(
            texts,
            truncation=self.options.truncation,
            max_length=limit if self.options.truncation else None,
            return_attention_mask=False,
        )
        return encoded["input_ids"]

    @property
    def generation_settings(self) -> dict[str, Any]:
        settings = super().generation_settings
        if self.uses_language_codes and self.options.tgt_lang is not None:
            # The pipeline passes the tokenizer's forced_bos_token_id to generate() beside the
            # input ids, over the model's own; it does not depend on the text, so one
            # throwaway input gives it here, before any row is tokenized.
            settings["forced_bos_token_id"] = int(self.translation_inputs([""])["forced_bos_token_id"])
        return settings

    def check_lengths(self, input_length: int) -> None:
        """The pipeline's advisory check, logged once per operator rather than per call."""
        max_length = self.resolved("max_length")
        if getattr(self, "_length_warned", False) or max_length is None or self.resolved("max_new_tokens") is not None:
            return
        if input_length > 0.9 * max_length:
            logger.warning("an input has %d tokens, more than 0.9 * max_length=%d; consider a larger max_length", input_length, max_length)
            self._length_warned = True

    def postprocess_row(self, raw: np.ndarray, features: dict[str, Any]) -> dict[str, Any]:
        return {"translation_text": self.decode(raw)}


def check_language_codes(tokenizer, options: TranslationOptions, model: str) -> None:
    """Both codes given, and each one that the tokenizer's own `_build_translation_inputs`
    turns into a language token: a special token of the tokenizer, never an ordinary piece
    ('de' is a piece of M2M100's and NLLB's vocabularies, whose codes are '__de__' and
    'deu_Latn') nor the unknown token (NLLB maps any code it lacks to it). The known codes
    come from `lang_code_to_id` (mBART, M2M100), else the tokenizer's extra special tokens."""
    from operators.errors import option_error

    codes = list(getattr(tokenizer, "lang_code_to_id", None) or ())
    if not codes:
        codes = [t for t in tokenizer.all_special_tokens if t not in set(tokenizer.special_tokens_map.values())]
    shown = f"; it has {', '.join(codes[:12])}{', ...' if len(codes) > 12 else ''} ({len(codes)} codes)" if codes else ""
    for name in ("src_lang", "tgt_lang"):
        if getattr(options, name) is None:
            raise option_error(type(options), name, None, f"model {model!r} translates between language codes; set {name}{shown}")
    try:
        with _TOKENIZER_LANGUAGE:
            built = tokenizer._build_translation_inputs(
                [""], return_tensors=None, src_lang=options.src_lang, tgt_lang=options.tgt_lang
            )
    except (KeyError, ValueError) as e:  # M2M100 raises KeyError for a code it lacks
        name = "src_lang" if options.src_lang not in codes else "tgt_lang"
        code = getattr(options, name)
        raise option_error(type(options), name, code, f"{code!r} is not a language code of model {model!r}{shown} ({e!r})") from None
    special = set(tokenizer.all_special_ids) - {tokenizer.unk_token_id}
    # The empty text encodes to the source code and the special tokens around it only.
    checks = (("src_lang", all(i in special for i in built["input_ids"][0])), ("tgt_lang", built["forced_bos_token_id"] in special))
    for name, known in checks:
        if not known:
            code = getattr(options, name)
            raise option_error(type(options), name, code, f"{code!r} is not a language code of model {model!r}{shown}")
