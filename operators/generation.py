"""Shared base of the generation tasks: text-generation (decoder-only) and summarization /
translation (encoder-decoder), all through `model.generate()`.

Stages:

* preprocess (CPU): optional task prefix ("summarize: ", "translate English to German: ")
  plus the text, tokenized to compact unpadded ids. Inputs longer than the model takes are
  truncated or refused per row, so that an oversized row never reaches the device (an
  out-of-range position is a device-side assert on CUDA, which poisons the whole process).
  Encoder inputs are truncated by default (the 4.57 pipelines do not truncate and fail such
  inputs); text-generation prompts are not, as in its pipeline.
* forward (device): micro-batches by token budget, sorted by length; LEFT padding for
  decoder-only models (the new tokens must follow the prompt directly; generate() derives
  position_ids from the attention mask), the tokenizer's side (right) for encoders. Returns
  the new token ids of each row, trimmed after the first EOS.

  A decoder-only row's answer must not depend on its neighbours, but generate() counts a
  batch's left padding against `max_length` and `min_length` (a 21-token prompt padded to
  77 stops 56 tokens early). So where a total length governs (max_length from the options,
  task params or the model's generation config, e.g. TinyLlama-Chat's 2048, with no
  max_new_tokens), each row gets the budget the pipeline's single-prompt call would give it:
  max_new_tokens = max_length - its own prompt length (plus the prefix's tokens, as the
  pipeline adds them). A micro-batch runs to its largest budget and a stopping criterion
  ends each row at its own; beam search, whose beams cannot stop one row alone, and per-row
  minimums run in micro-batches of equal budgets. Encoder-decoder models count decoder
  tokens only, which no encoder padding touches.
* postprocess (CPU): decode with special tokens skipped.

Generation settings, highest priority first: the operator's options; the model config's
`task_specific_params[<task>]` (T5's legacy per-task settings, as the pipelines read them);
the model's own generation_config; the pipeline's defaults for keys none of those set
(text-generation: max_new_tokens=256, do_sample=True, temperature=0.7; summarization and
translation: max_new_tokens=256, num_beams=4). A default max_new_tokens never overrides a
max_length that is set. Unlike transformers 4.57's summarization/translation pipelines,
which let their own max_new_tokens/num_beams defaults replace values the model's generation
config sets, the model's config wins here, as generate() and the v5 pipelines do.

Seeds (`seed`, default 0) make sampling reproducible and independent of batching: with
sampling and one beam, every row draws its tokens from its own torch.Generator, seeded from
`seed` and the row's prompt token ids. So the same seed and prompt give the same text alone,
in any micro-batch, with any neighbours and padding, in any run on the same device type
(CPU and CUDA generators give different streams). Identical prompts in one call therefore get
identical texts; vary `seed` for different samples. Beam sampling (num_beams > 1) cannot be
seeded per row: each micro-batch then runs under a forked torch RNG seeded from `seed` and
its rows, reproducible for the same batch composition only. `seed=None` uses torch's global
RNG (not reproducible).
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager, nullcontext
from functools import cached_property
from typing import Any, ClassVar

import numpy as np
from pydantic import Field, model_validator

from operators.base import Operator
from operators.batching import pad_sequences
from operators.errors import RowError
from operators.text_inputs import TextLimitOptions, TokenLimit, check_text

# Options passed to generate() under the same name when set.
GENERATE_OPTIONS = (
    "max_new_tokens",
    "min_new_tokens",
    "max_length",
    "min_length",
    "do_sample",
    "temperature",
    "top_k",
    "top_p",
    "num_beams",
    "repetition_penalty",
    "no_repeat_ngram_size",
)
SAMPLING_KEYS = ("temperature", "top_k", "top_p")
# generate()'s own values for keys that neither the model nor the caller sets.
GENERATE_FALLBACKS = {"temperature": 1.0, "top_k": 50, "top_p": 1.0, "num_beams": 1, "do_sample": False}


class GenerationOptions(TextLimitOptions):
    max_new_tokens: int | None = Field(None, ge=1, description="Most tokens to generate per row.")
    min_new_tokens: int | None = Field(None, ge=0, description="Fewest tokens to generate before EOS is allowed.")
    max_length: int | None = Field(
        None, ge=1, description="Most tokens of the whole sequence (prompt included for decoder-only models); "
        "max_new_tokens takes precedence when both are set."
    )
    min_length: int | None = Field(None, ge=0, description="Fewest tokens of the whole sequence.")
    do_sample: bool | None = Field(None, description="Sample instead of greedy/beam search.")
    temperature: float | None = Field(None, gt=0, description="Sampling temperature.")
    top_k: int | None = Field(None, ge=0, description="Sample from the k most likely tokens (0: all).")
    top_p: float | None = Field(None, gt=0, le=1, description="Sample from the smallest set with this probability mass.")
    num_beams: int | None = Field(None, ge=1, description="Beam search width (1: no beam search).")
    repetition_penalty: float | None = Field(None, gt=0, description="Penalty on tokens already in the sequence.")
    no_repeat_ngram_size: int | None = Field(None, ge=0, description="Never repeat an n-gram of this size.")
    seed: int | None = Field(
        0, ge=0, description="Seed for sampling; per row when num_beams is 1, so results do not depend on "
        "batching. None: torch's global RNG."
    )
    truncation: bool = Field(
        True, description="Truncate inputs longer than the model takes instead of failing the row."
    )
    max_input_tokens: int | None = Field(
        None, ge=1, description="Token limit per encoder input; default: the tokenizer's model_max_length, "
        "capped by the model's positions."
    )
    clean_up_tokenization_spaces: bool | None = Field(
        None, description="Clean up spaces before punctuation when decoding; default: the task's pipeline default."
    )

    @model_validator(mode="after")
    def _lengths_ordered(self) -> "GenerationOptions":
        for low, high in (("min_new_tokens", "max_new_tokens"), ("min_length", "max_length")):
            lo, hi = getattr(self, low), getattr(self, high)
            if lo is not None and hi is not None and lo > hi:
                raise ValueError(f"{low} must not exceed {high}, got {low}={lo} > {high}={hi}")
        return self

    def generate_kwargs(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in GENERATE_OPTIONS if getattr(self, k) is not None}


class GenerationOperator(TokenLimit, Operator):
    """Base of the generation operators. Subclasses set `pipeline_defaults`, the output
    column, and optionally `task_params_key()` / `prompt_prefix()`."""

    modality = "text"
    input_roles = ("text",)
    processor_kind = "tokenizer"
    Options: ClassVar[type[GenerationOptions]] = GenerationOptions
    rows_per_call: ClassVar[int] = 256  # token ids are small; sorting more rows pads less
    # The pipeline's generation defaults for keys that neither the model nor the caller sets.
    pipeline_defaults: ClassVar[dict[str, Any]] = {"max_new_tokens": 256}
    # transformers' pipelines decode seq2seq outputs with clean_up_tokenization_spaces=False.
    default_clean_up_spaces: ClassVar[bool | None] = False

    # ------------------------------------------------------------------ model facts (no weights)

    @property
    def is_encoder_decoder(self) -> bool:
        return bool(getattr(self.model_config, "is_encoder_decoder", False))

    @cached_property
    def _base_generation_config(self):
        """The model's own generation config, read without loading weights where possible."""
        if self._model is not None:
            return self._model.generation_config
        from transformers import GenerationConfig

        try:
            return GenerationConfig.from_pretrained(str(self.model_id), **self.load_options.hub_kwargs())
        except OSError:
            # No generation_config.json (distilbart-cnn, older Marian and T5 repos): the call
            # transformers' own from_pretrained makes then, reading the generation keys of
            # config.json as written (max_length, num_beams, ...). from_model_config(config)
            # would miss them: v5 configs do not keep those keys as attributes.
            return GenerationConfig.from_pretrained(
                str(self.model_id), config_file_name="config.json", _from_model_config=True,
                **self.load_options.hub_kwargs(),
            )

    def check_config(self) -> None:
        """The tokenizer can pad, and the generation settings (options over task params over
        the model's generation config) are ones generate() accepts, e.g. no forced token that
        is also suppressed."""
        import copy

        super().check_config()
        _ = self.pad_token_id
        settings = copy.deepcopy(self._base_generation_config)
        settings.update(**self.generation_settings)
        try:
            settings.validate()
        except ValueError as e:
            raise ValueError(f"generation settings for model {self.model_id!r}: {e}") from None

    def task_params_key(self) -> str | None:
        """Key of this task in the config's `task_specific_params`, if it has one."""
        return None

    def task_params(self) -> dict[str, Any]:
        params = getattr(self.model_config, "task_specific_params", None) or {}
        key = self.task_params_key()
        return dict(params.get(key, {})) if key else {}

    def prompt_prefix(self) -> str:
        prefix = self.task_params().get("prefix")
        if prefix is None:
            prefix = getattr(self.model_config, "prefix", None)
        return prefix or ""

    @property
    def generation_settings(self) -> dict[str, Any]:
        """The kwargs for generate(): options over task params over the model's config, plus
        the pipeline defaults for keys nobody set (see the module docstring). Not cached:
        `with_options` copies share this instance's cached attributes.

        This restates v5's `Pipeline._prepare_generate_kwargs`, which cannot be called here:
        it is a method of a pipeline built around loaded weights, and this runs in CPU stages
        and check_config() without any. tests/checkpoints compare the two on gpt2,
        Qwen2.5-Instruct and TinyLlama-Chat."""
        model_set = self._base_generation_config.to_diff_dict()
        task = {k: v for k, v in self.task_params().items() if k != "prefix"}
        user = self.options.generate_kwargs()
        kwargs = {**task, **user}
        set_keys = {**model_set, **kwargs}
        defaults = {
            k: v
            for k, v in self.pipeline_defaults.items()
            if k not in set_keys and not (k == "max_new_tokens" and "max_length" in set_keys)
        }
        if not {**set_keys, **defaults}.get("do_sample"):
            defaults = {k: v for k, v in defaults.items() if k not in SAMPLING_KEYS}
        kwargs.update(defaults)
        if self._base_generation_config.pad_token_id is None and "pad_token_id" not in kwargs:
            kwargs["pad_token_id"] = self.pad_token_id
        return kwargs

    def resolved(self, key: str) -> Any:
        """The value generate() will use for `key`."""
        settings = self.generation_settings
        if key in settings:
            return settings[key]
        value = getattr(self._base_generation_config, key, None)
        return GENERATE_FALLBACKS.get(key) if value is None else value

    @property
    def pad_token_id(self) -> int:
        tokenizer = self.processor
        # GPT-2 has no pad token; like the text-generation pipeline, pad with EOS. Padded
        # positions are masked out, and EOS is special, so decoding skips it.
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if pad is None:
            raise ValueError(f"tokenizer of {self.model_id!r} has neither a pad nor an eos token")
        return int(pad)

    def eos_token_ids(self) -> set[int]:
        eos = self.resolved("eos_token_id")
        if eos is None:
            eos = self.processor.eos_token_id
        return set(eos) if isinstance(eos, (list, tuple)) else ({int(eos)} if eos is not None else set())

    def max_input_tokens(self) -> int:
        """The encoder's token limit, as every text task's (operators.text_inputs.token_limit):
        the smallest of the option, the tokenizer's model_max_length unless unset (1e30 for
        a tokenizer saved without one) and the model's positions."""
        return self.max_tokens(self.options.max_input_tokens)

    # ------------------------------------------------------------------ stage 1: preprocess

    def check_row(self, row: dict[str, Any]) -> dict[str, Any]:
        return {"text": check_text(row["text"], "text", self.options.max_text_chars)}

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        """Token ids of the prefixed texts, truncated to max_input_tokens when truncation is on."""
        limit = self.max_input_tokens()
        encoded = self.processor(
            texts,
            truncation=self.options.truncation,
            max_length=limit if self.options.truncation else None,
            return_attention_mask=False,
        )
        return encoded["input_ids"]

    def preprocess_rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        prefix = self.prompt_prefix()
        ids = self.tokenize([prefix + r["text"] for r in rows])
        limit = self.max_input_tokens()
        features = []
        for row, row_ids in zip(rows, ids):
            if len(row_ids) > limit:
                raise RowError("preprocess", f"input has {len(row_ids)} tokens; the model takes at most {limit} (truncation is off)")
            features.append(self.row_features(row, np.asarray(row_ids, dtype=np.int32)))
        return features

    def row_features(self, row: dict[str, Any], input_ids: np.ndarray) -> dict[str, Any]:
        return {"input_ids": input_ids}

    # ------------------------------------------------------------------ generation lengths

    def prefix_length(self) -> int:
        """Tokens of the prompt prefix, which the text-generation pipeline adds to a total
        length (max_length, min_length), tokenized as it does (no special tokens). Restated
        from its `_sanitize_parameters` and `_forward`, which need a pipeline instance."""
        prefix = self.prompt_prefix()
        return len(self.processor(prefix, add_special_tokens=False)["input_ids"]) if prefix else 0

    def total_lengths(self) -> tuple[int | None, int | None]:
        """(max_length, min_length) where a total length, prompt included, bounds a
        decoder-only model's generation (no max_new_tokens / min_new_tokens set), shifted by
        the prefix's tokens as the pipeline shifts them; None where it does not (and always
        for encoder-decoder models, whose lengths count decoder tokens only)."""
        if self.is_encoder_decoder:
            return None, None
        shift = self.prefix_length()
        max_length = self.resolved("max_length") if self.resolved("max_new_tokens") is None else None
        min_length = self.resolved("min_length") if self.resolved("min_new_tokens") is None else None
        return (
            None if max_length is None else max_length + shift,
            None if not min_length else min_length + shift,
        )

    def new_token_bounds(self, prompt_length: int) -> tuple[int | None, int | None]:
        """(max_new_tokens, min_new_tokens) of one decoder-only prompt, from the total lengths
        as generate() applies them to that prompt alone; None where no total length governs."""
        max_length, min_length = self.total_lengths()
        return (
            None if max_length is None else max_length - prompt_length,
            None if min_length is None else max(0, min_length - prompt_length),
        )

    # ------------------------------------------------------------------ stage 2: forward

    def plan_batches(self, features: list[dict[str, Any]]) -> list[list[int]]:
        """Token-budget micro-batches, within groups of rows that must share their length
        bounds: equal max_new_tokens under beam search, equal min_new_tokens (see the module
        docstring). Greedy and sampled rows of different max_new_tokens share batches."""
        max_length, min_length = self.total_lengths()
        beams = self.resolved("num_beams") or 1
        if (max_length is None or beams == 1) and min_length is None:
            return super().plan_batches(features)
        groups: dict[tuple, list[int]] = {}
        for i, f in enumerate(features):
            max_new, min_new = self.new_token_bounds(len(f["input_ids"]))
            groups.setdefault((max_new if beams > 1 else None, min_new), []).append(i)
        batches = []
        for members in groups.values():
            for batch in super().plan_batches([features[i] for i in members]):
                batches.append([members[j] for j in batch])
        return batches

    def forward_batch(self, features: list[dict[str, Any]]) -> list[np.ndarray]:
        side = "right" if self.is_encoder_decoder else "left"
        prompts = [f["input_ids"] for f in features]
        ids, mask = pad_sequences(prompts, self.pad_token_id, side=side, dtype=np.int64)
        self.check_lengths(ids.shape[1])
        kwargs = dict(self.generation_settings)
        row_limits = self._row_length_kwargs(kwargs, [len(p) for p in prompts], ids.shape[1])
        sampling = bool(self.resolved("do_sample"))
        seed = self.options.seed
        rng = nullcontext()
        if sampling and seed is not None and self.resolved("num_beams") == 1:
            kwargs.update(self._row_seeded_sampling(prompts, seed))
        elif sampling and seed is not None:
            rng = _forked_rng(self.device, _mix_seed(seed, prompts))
        with rng:
            sequences = self.model.generate(
                input_ids=self.to_device(ids), attention_mask=self.to_device(mask), **kwargs
            )
        sequences = self.host_rows(sequences)
        # Decoder-only output repeats the (padded) prompt; encoder-decoder output starts with
        # the decoder start token, which may itself be EOS (BART), so skip it before trimming.
        start = 1 if self.is_encoder_decoder else ids.shape[1]
        eos = self.eos_token_ids()
        # A row stopped at its own budget still receives tokens while its neighbours run
        # (pad tokens only where the model has an EOS), so cut at the budget too.
        limits = row_limits or [None] * len(features)
        return [trim_after_eos(row[start:][:limit], eos) for row, limit in zip(sequences, limits)]

    def _row_length_kwargs(self, kwargs: dict[str, Any], prompt_lengths: list[int], padded: int) -> list[int] | None:
        """Turn a total max_length / min_length into each row's own new-token bounds (see
        the module docstring), in `kwargs` for generate(); the rows' max_new_tokens, or None
        where no total length governs."""
        bounds = [self.new_token_bounds(n) for n in prompt_lengths]
        max_new = [b[0] for b in bounds]
        min_new = {b[1] for b in bounds}
        if max_new[0] is None and min_new == {None}:
            return None
        if len(min_new) > 1:
            raise RuntimeError(f"rows of different min_new_tokens {sorted(min_new)} share a micro-batch")
        # Totals over the padded batch: the same bounds as max_new_tokens / min_new_tokens,
        # without generate()'s warning that those override the model config's max_length.
        (min_new_tokens,) = min_new
        if min_new_tokens is not None:
            kwargs["min_length"] = padded + min_new_tokens
        if max_new[0] is None:
            return None
        if min(max_new) < 1:
            raise RowError("preprocess", f"the prompt leaves no room under max_length (max_new_tokens {min(max_new)})")
        kwargs["max_length"] = padded + max(max_new)
        if len(set(max_new)) > 1:
            if (self.resolved("num_beams") or 1) > 1:
                raise RuntimeError(f"beam search rows of different max_new_tokens {sorted(set(max_new))} share a micro-batch")
            from transformers import StoppingCriteriaList

            kwargs["stopping_criteria"] = StoppingCriteriaList([_row_max_length([padded + m for m in max_new], self.device)])
        return max_new

    def _row_seeded_sampling(self, prompts: list[np.ndarray], seed: int) -> dict[str, Any]:
        """generate() kwargs that sample each row from its own generator: our processors do
        the warping and the draw (forcing the drawn token), and generate() runs greedy, which
        then picks exactly that token. generate() applies its own sampling warpers after any
        custom processor, so a custom processor cannot draw after them; this is why the
        warpers move into our list."""
        from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

        processors = LogitsProcessorList()
        temperature, top_k, top_p = (self.resolved(k) for k in SAMPLING_KEYS)
        if temperature is not None and temperature != 1.0:
            processors.append(TemperatureLogitsWarper(temperature))
        if top_k:
            processors.append(TopKLogitsWarper(top_k=top_k))
        if top_p is not None and top_p < 1.0:
            processors.append(TopPLogitsWarper(top_p=top_p))
        processors.append(_row_sampler([_mix_seed(seed, [p]) for p in prompts], self.device))
        # None resets the model's own sampling values for this call, so that greedy decoding
        # does not warn about them.
        return {"do_sample": False, "logits_processor": processors, **{k: None for k in SAMPLING_KEYS}}

    def check_lengths(self, input_length: int) -> None:
        """Advisory checks of the longest input against the length settings (pipelines warn)."""

    # ------------------------------------------------------------------ stage 3: postprocess

    def decode(self, new_ids: np.ndarray) -> str:
        clean = self.options.clean_up_tokenization_spaces
        if clean is None:
            clean = self.default_clean_up_spaces
        return self.processor.decode(
            [int(t) for t in new_ids], skip_special_tokens=True, clean_up_tokenization_spaces=clean
        )


def trim_after_eos(ids: np.ndarray, eos: set[int]) -> np.ndarray:
    """New tokens up to and including the first EOS; what follows is padding of finished rows."""
    for i, token in enumerate(ids):
        if int(token) in eos:
            return ids[: i + 1].astype(np.int32)
    return ids.astype(np.int32)


def _mix_seed(seed: int, prompts: list[np.ndarray]) -> int:
    """A 63-bit seed from the user's seed and prompt token ids (stable across processes,
    unlike hash())."""
    digest = hashlib.blake2b(str(seed).encode(), digest_size=8)
    for p in prompts:
        digest.update(np.asarray(p, dtype=np.int64).tobytes())
        digest.update(b"|")
    return int.from_bytes(digest.digest(), "little") & (2**63 - 1)


def _row_sampler(seeds: list[int], device):
    """A logits processor that draws one token per row from that row's generator and masks
    every other token to -inf."""
    import torch
    from transformers import LogitsProcessor

    class RowSeededSampler(LogitsProcessor):
        def __init__(self):
            self.generators = [torch.Generator(device=device).manual_seed(s) for s in seeds]

        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
            if scores.shape[0] != len(self.generators):
                raise RuntimeError(f"row-seeded sampling expects {len(self.generators)} rows, got {scores.shape[0]}")
            cdf = torch.softmax(scores.float(), dim=-1).cumsum(-1)
            uniform = torch.stack(
                [torch.rand((), generator=g, device=scores.device) for g in self.generators]
            )
            # Inverse CDF; side="right" never lands on a zero-probability token.
            target = (uniform * cdf[:, -1]).unsqueeze(-1)
            choice = torch.searchsorted(cdf, target, side="right").clamp_(max=scores.shape[-1] - 1)
            forced = torch.full_like(scores, float("-inf"))
            return forced.scatter_(1, choice, 0.0)

    return RowSeededSampler()


def _row_max_length(limits: list[int], device):
    """A stopping criterion that ends each row when its sequence (padded prompt included)
    reaches its own length: generate() marks that row finished and pads it thereafter, as
    its own MaxLengthCriteria would for a row run alone."""
    import torch
    from transformers import StoppingCriteria

    class RowMaxLength(StoppingCriteria):
        def __init__(self):
            self.limits = torch.tensor(limits, device=device)

        def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
            return input_ids.shape[1] >= self.limits

    return RowMaxLength()


@contextmanager
def _forked_rng(device, seed: int):
    """torch's global RNG seeded inside, restored after, so other users of it are unaffected."""
    import torch

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield
