"""A checkpoint's sentence-transformers modules (modules.json), read and applied as
`SentenceTransformer.encode` applies them.

A sentence-transformers checkpoint declares how token states become one vector: the
Transformer module's `sentence_bert_config.json` (max_seq_length, do_lower_case), a Pooling
module (`cls` for BGE, `mean` for MiniLM, `lasttoken` for decoder embedders), optional Dense
projections and a Normalize, plus prompts in `config_sentence_transformers.json`. Mean pooling
a CLS checkpoint gives vectors that look fine and are wrong, so a module we do not implement
is a load error that names it, never a fallback.

Reading the files (`read_sentence_modules`) needs no weights and no torch: the CPU stage does it
when it loads the tokenizer. `SentenceHead` holds the Dense weights and runs the modules on
the device, on the transformer's last hidden state. The pooling follows sentence-transformers
6.3's `Pooling._forward_padded` step by step; see the comments there for the few places where we
differ on purpose. Why a copy, not a call: sentence-transformers is the tests' reference, not a
runtime dependency (it pulls scikit-learn into every worker image), and its modules
take the whole features dict of one padded batch; tests/checkpoints/test_embedding_checkpoints.py
holds every pooling mode, Dense and Normalize to `encode()`.

The token limit is not re-derived here: the operator's (operators/text_inputs.py) caps the
tokenizer's model_max_length by the model's positions, less RoBERTa's reserved two.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from operators.loading import LoadOptions

POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
# The legacy boolean keys of 1_Pooling/config.json (every hub checkpoint before v6), in the
# order sentence-transformers concatenates the modes they enable.
LEGACY_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
# SentenceTransformer's own prompts: every model has them, empty unless the checkpoint fills them.
DEFAULT_PROMPTS = {"query": "", "document": ""}
# Keys of a checkpoint's tokenizer_args that are about where files come from or whether to run
# code, which the operator's own load options decide.
_HUB_KEYS = frozenset(
    {"revision", "cache_dir", "token", "use_auth_token", "local_files_only", "trust_remote_code", "subfolder"}
)
_DEFAULT_ACTIVATION = "torch.nn.modules.activation.Tanh"  # Dense's default in sentence-transformers


def _module_types(name: str, *modules: str) -> frozenset[str]:
    """The `type` strings that modules.json may hold for one class: the `sentence_transformers.models`
    paths that releases up to v5 wrote, and the defining modules that v5.4+ and v6 write."""
    return frozenset(
        {f"sentence_transformers.models.{name}", f"sentence_transformers.models.{name}.{name}"}
        | {f"{m}.{name}" for m in modules}
    )


_BASE = "sentence_transformers.base.modules"
_SENTENCE = "sentence_transformers.sentence_transformer.modules"
_TRANSFORMER_TYPES = _module_types("Transformer", f"{_BASE}.transformer", _SENTENCE)
_POOLING_TYPES = _module_types("Pooling", f"{_SENTENCE}.pooling", _SENTENCE)
_DENSE_TYPES = _module_types("Dense", f"{_BASE}.dense", f"{_SENTENCE}.dense", _SENTENCE)
_NORMALIZE_TYPES = _module_types("Normalize", f"{_BASE}.normalize", f"{_SENTENCE}.normalize", _SENTENCE)
_DROPOUT_TYPES = _module_types("Dropout", f"{_SENTENCE}.dropout", _SENTENCE)
SUPPORTED_MODULES = ("Transformer", "Pooling", "Dense", "Normalize", "Dropout")


# ---------------------------------------------------------------------- what the files say


@dataclass(frozen=True)
class TransformerModule:
    """sentence_bert_config.json: how the Transformer module tokenizes."""

    max_seq_length: int | None = None
    do_lower_case: bool = False
    processor_kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PoolingModule:
    modes: tuple[str, ...] = ("mean",)
    include_prompt: bool = True


@dataclass(frozen=True)
class DenseModule:
    path: str
    in_features: int
    out_features: int
    bias: bool = True
    activation: str = _DEFAULT_ACTIVATION
    input_name: str = "sentence_embedding"
    output_name: str = "sentence_embedding"
    use_residual: bool = False


@dataclass(frozen=True)
class NormalizeModule:
    input_name: str = "sentence_embedding"
    output_name: str = "sentence_embedding"


class PromptNameError(ValueError):
    """A prompt_name that the checkpoint does not have."""


@dataclass(frozen=True)
class SentenceModules:
    """A checkpoint's sentence-transformers configuration. `declared` is False for a plain
    transformers checkpoint (no modules.json), which gets masked mean pooling."""

    declared: bool
    transformer: TransformerModule
    modules: tuple[PoolingModule | DenseModule | NormalizeModule, ...]
    prompts: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_PROMPTS))
    default_prompt_name: str | None = None
    truncate_dim: int | None = None

    @property
    def normalizes(self) -> bool:
        """Whether the sentence embedding leaves the modules L2-normalized."""
        return any(isinstance(m, NormalizeModule) and m.output_name == "sentence_embedding" for m in self.modules)

    def resolve_prompt(self, prompt: str | None, prompt_name: str | None, model: str) -> str:
        """The text prepended to every input, as `SentenceTransformer.encode` resolves it:
        `prompt` wins, else `prompt_name`, else the checkpoint's `default_prompt_name`."""
        if prompt is not None:
            return prompt
        if prompt_name is not None:
            if prompt_name not in self.prompts:
                raise PromptNameError(
                    f"prompt_name={prompt_name!r} is not a prompt of {model!r}; its prompts are "
                    f"{sorted(self.prompts)} (config_sentence_transformers.json)"
                )
            return self.prompts[prompt_name]
        if self.default_prompt_name is not None:
            return self.prompts[self.default_prompt_name]
        return ""


def plain_modules() -> SentenceModules:
    """A checkpoint without modules.json: masked mean pooling of the last hidden state."""
    return SentenceModules(declared=False, transformer=TransformerModule(), modules=(PoolingModule(),))


def read_sentence_modules(load_options: LoadOptions) -> SentenceModules:
    """Read modules.json and the files it points to. Raises ValueError naming the model and
    the module for anything that we would not compute as sentence-transformers does."""
    model = load_options.model
    modules_json = read_checkpoint_json(load_options, "modules.json")
    if modules_json is None:
        return plain_modules()
    if not isinstance(modules_json, list) or not modules_json:
        raise ValueError(f"{model!r}: modules.json must be a non-empty list of modules, got {modules_json!r}")

    transformer: TransformerModule | None = None
    modules: list[PoolingModule | DenseModule | NormalizeModule] = []
    available = {"token_embeddings"}  # the feature names the modules so far produce
    for position, entry in enumerate(modules_json):
        kind = str(entry.get("type", "")) if isinstance(entry, dict) else ""
        path = str(entry.get("path", "")) if isinstance(entry, dict) else ""
        where = f"{model!r}: modules.json module {position} ({kind or entry!r})"
        if kind in _TRANSFORMER_TYPES:
            if position != 0:
                raise ValueError(f"{where}: a Transformer module must come first, as the only input module")
            if path not in ("", "."):
                raise ValueError(
                    f"{where}: the Transformer module lives in the subfolder {path!r}; feature-extraction "
                    "loads the model and tokenizer from the checkpoint's root only"
                )
            transformer = _transformer_module(load_options, where)
            continue
        if position == 0:
            raise ValueError(
                f"{where}: feature-extraction runs checkpoints whose first module is a Transformer; "
                f"it does not implement {kind!r}"
            )
        if kind in _POOLING_TYPES:
            modules.append(_pooling_module(_module_config(load_options, path, where, required=True), where))
            _consume(available, "token_embeddings", where)
            available.add("sentence_embedding")
        elif kind in _DENSE_TYPES:
            dense = _dense_module(_module_config(load_options, path, where, required=True), path, where)
            _consume(available, dense.input_name, where)
            available.add(dense.output_name)
            modules.append(dense)
        elif kind in _NORMALIZE_TYPES:
            config = _module_config(load_options, path, where, required=False) or {}
            input_name = config.get("module_input_name", "sentence_embedding")
            output_name = config.get("module_output_name") or input_name
            # Like sentence-transformers' Normalize, a missing input is a no-op, not an error.
            if input_name in available:
                modules.append(NormalizeModule(input_name, output_name))
                available.add(output_name)
        elif kind in _DROPOUT_TYPES:
            continue  # identity at inference (eval mode)
        else:
            raise ValueError(
                f"{where}: feature-extraction does not implement the module type {kind!r} (it implements "
                f"{', '.join(SUPPORTED_MODULES)} from sentence_transformers); refusing to load rather than "
                "compute embeddings that differ from SentenceTransformer.encode"
            )
    if transformer is None:
        raise ValueError(f"{model!r}: modules.json has no Transformer module")
    if "sentence_embedding" not in available:
        raise ValueError(f"{model!r}: modules.json has no Pooling module, so it yields no sentence embedding")

    config = read_checkpoint_json(load_options, "config_sentence_transformers.json") or {}
    model_type = config.get("model_type", "SentenceTransformer")
    if model_type != "SentenceTransformer":
        raise ValueError(
            f"{model!r} is a sentence-transformers {model_type}, not a SentenceTransformer "
            "(config_sentence_transformers.json model_type); feature-extraction computes dense sentence embeddings"
        )
    saved = config.get("prompts") or {}
    if not isinstance(saved, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in saved.items()):
        raise ValueError(
            f"{model!r}: config_sentence_transformers.json prompts must map names to strings, got {saved!r}"
        )
    prompts = {**DEFAULT_PROMPTS, **saved}
    default_prompt_name = config.get("default_prompt_name")
    if default_prompt_name is not None and default_prompt_name not in prompts:
        raise ValueError(
            f"{model!r}: config_sentence_transformers.json default_prompt_name={default_prompt_name!r} "
            f"is not one of its prompts {sorted(prompts)}"
        )
    truncate_dim = config.get("truncate_dim")
    if truncate_dim is not None and (not isinstance(truncate_dim, int) or truncate_dim < 1):
        raise ValueError(
            f"{model!r}: config_sentence_transformers.json truncate_dim must be a positive int, got {truncate_dim!r}"
        )
    return SentenceModules(
        declared=True,
        transformer=transformer,
        modules=tuple(modules),
        prompts=prompts,
        default_prompt_name=default_prompt_name,
        truncate_dim=truncate_dim,
    )


def _consume(available: set[str], name: str, where: str) -> None:
    if name not in available:
        raise ValueError(f"{where}: reads the feature {name!r}, which no module before it produces")


def _module_config(load_options: LoadOptions, path: str, where: str, *, required: bool) -> dict[str, Any] | None:
    config = read_checkpoint_json(load_options, "config.json", subfolder=path)
    if config is None and required:
        raise ValueError(f"{where}: no config.json in its folder {path!r}")
    if config is not None and not isinstance(config, dict):
        raise ValueError(f"{where}: config.json must be a JSON object, got {type(config).__name__}")
    return config


def _transformer_module(load_options: LoadOptions, where: str) -> TransformerModule:
    config = read_checkpoint_json(load_options, "sentence_bert_config.json") or {}
    task = config.get("transformer_task", "feature-extraction")
    if task != "feature-extraction":
        raise ValueError(f"{where}: transformer_task {task!r} is not implemented (feature-extraction only)")
    output_name = config.get("module_output_name", "token_embeddings")
    if output_name != "token_embeddings":
        raise ValueError(f"{where}: module_output_name {output_name!r} is not implemented (token_embeddings only)")
    modality = config.get("modality_config")
    if modality is not None:
        text = modality.get("text") if isinstance(modality, dict) else None
        output = text.get("method_output_name") if isinstance(text, dict) else None
        if (
            set(modality) != {"text"}
            or text.get("method") != "forward"
            or output not in ("last_hidden_state", ["last_hidden_state"])
        ):
            raise ValueError(
                f"{where}: modality_config {modality!r} is not implemented (text through forward's "
                "last_hidden_state only)"
            )
    if config.get("processing_kwargs"):
        raise ValueError(
            f"{where}: processing_kwargs {config['processing_kwargs']!r} are not implemented; "
            "feature-extraction tokenizes with the tokenizer's own settings"
        )
    max_seq_length = config.get("max_seq_length")
    if max_seq_length is not None and (not isinstance(max_seq_length, int) or max_seq_length < 1):
        raise ValueError(f"{where}: max_seq_length must be a positive int, got {max_seq_length!r}")
    processor_kwargs = config.get("processor_kwargs", config.get("tokenizer_args")) or {}
    # model_args / config_args are not applied: the operator's own options choose dtype and
    # attention kernel, and the rest configure remote code, which we do not run by default.
    return TransformerModule(
        max_seq_length=max_seq_length,
        do_lower_case=bool(config.get("do_lower_case", False)),
        processor_kwargs={k: v for k, v in dict(processor_kwargs).items() if k not in _HUB_KEYS},
    )


def _pooling_module(config: dict[str, Any], where: str) -> PoolingModule:
    mode = config.get("pooling_mode")
    if mode is None:
        # Legacy boolean keys: every enabled mode, in sentence-transformers' order; none is mean.
        mode = tuple(m for key, m in LEGACY_POOLING_KEYS.items() if config.get(key, False)) or ("mean",)
    modes = (mode,) if isinstance(mode, str) else tuple(mode)
    unknown = [m for m in modes if m not in POOLING_MODES]
    if not modes or unknown:
        raise ValueError(f"{where}: pooling mode {unknown or mode!r} is not one of {POOLING_MODES}")
    return PoolingModule(modes=modes, include_prompt=bool(config.get("include_prompt", True)))


def _dense_module(config: dict[str, Any], path: str, where: str) -> DenseModule:
    try:
        in_features, out_features = int(config["in_features"]), int(config["out_features"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{where}: config.json needs integer in_features and out_features, got {config!r}") from None
    activation = config.get("activation_function") or _DEFAULT_ACTIVATION
    if not isinstance(activation, str) or not activation.startswith("torch."):
        # sentence-transformers imports other paths only with trust_remote_code, and otherwise
        # falls back to Tanh with a warning; we refuse instead of computing a different function.
        raise ValueError(
            f"{where}: activation_function {activation!r} is not a torch.nn module; feature-extraction "
            "does not import activation code from other packages"
        )
    input_name = config.get("module_input_name", "sentence_embedding")
    return DenseModule(
        path=path,
        in_features=in_features,
        out_features=out_features,
        bias=bool(config.get("bias", True)),
        activation=activation,
        input_name=input_name,
        output_name=config.get("module_output_name") or input_name,
        use_residual=bool(config.get("use_residual", False)),
    )


# ---------------------------------------------------------------------- checkpoint files


def checkpoint_file(load_options: LoadOptions, filename: str, subfolder: str = "") -> str | None:
    """The local path of one file of the checkpoint (a directory or the hub), or None when it has none."""
    subfolder = subfolder.strip("/") if subfolder not in ("", ".") else ""
    if load_options.is_local:
        path = os.path.join(load_options.model, subfolder, filename)
        return path if os.path.isfile(path) else None
    from transformers.utils import cached_file

    return cached_file(
        load_options.model,
        filename,
        subfolder=subfolder,
        revision=load_options.revision,
        _raise_exceptions_for_missing_entries=False,
        _raise_exceptions_for_connection_errors=False,
    )


def read_checkpoint_json(load_options: LoadOptions, filename: str, subfolder: str = "") -> Any:
    """A JSON file of the checkpoint, or None when it has none."""
    path = checkpoint_file(load_options, filename, subfolder)
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{load_options.model!r}: cannot read {os.path.join(subfolder, filename)}: {e}") from e


def load_sentence_tokenizer(load_options: LoadOptions, transformer: TransformerModule):
    """The tokenizer as sentence-transformers' Transformer module sets it up: model_max_length
    from max_seq_length, and do_lower_case. (Without max_seq_length, sentence-transformers caps
    by max_position_embeddings, which is 2 past RoBERTa's last usable position; the operator's
    token limit caps by the positions the model really has.)"""
    from operators.loading import load_processor

    kwargs = dict(transformer.processor_kwargs)
    if transformer.max_seq_length is not None:
        kwargs.setdefault("model_max_length", transformer.max_seq_length)
    tokenizer = load_processor("tokenizer", load_options, **kwargs)
    if transformer.do_lower_case:
        _lowercase(tokenizer)
    return tokenizer


def _lowercase(tokenizer) -> None:
    from tokenizers.normalizers import Lowercase
    from tokenizers.normalizers import Sequence as NormalizerSequence

    backend = tokenizer.backend_tokenizer
    normalizer = backend.normalizer
    if isinstance(normalizer, Lowercase) or (
        isinstance(normalizer, NormalizerSequence) and any(isinstance(n, Lowercase) for n in normalizer)
    ):
        return
    steps = [Lowercase()]
    if isinstance(normalizer, NormalizerSequence):
        steps += list(normalizer)
    elif normalizer is not None:
        steps.append(normalizer)
    backend.normalizer = NormalizerSequence(steps)


def prompt_token_count(tokenizer, prompt: str, max_length: int | None) -> int:
    """Tokens of `prompt` at the start of `prompt + text`, as sentence-transformers counts them
    for include_prompt=False: the prompt tokenized alone, less a trailing special token (SEP/EOS)."""
    ids = tokenizer(prompt, truncation=max_length is not None, max_length=max_length)["input_ids"]
    count = len(ids)
    if count and ids[-1] in set(tokenizer.all_special_ids):
        count -= 1
    return count


# ---------------------------------------------------------------------- on the device


class SentenceHead:
    """The modules after the Transformer, on the device: pooling, Dense, Normalize."""

    def __init__(self, modules: SentenceModules, load_options: LoadOptions, device):
        self.modules = modules
        self._dense = {
            id(m): _load_dense(m, load_options, device) for m in modules.modules if isinstance(m, DenseModule)
        }

    def __call__(self, hidden, attention_mask, prompt_lengths: Sequence[int], normalize: bool | None = None):
        """Sentence embeddings (float32, rows x dim) from the last hidden state of one micro-batch.

        `prompt_lengths`: the prompt's token count per row (0 without a prompt).
        `normalize`: None runs the modules as declared; False skips the Normalize of the
        sentence embedding; True
        also L2-normalizes the result, as `encode(normalize_embeddings=True)` does.
        """
        import torch

        # Pooled in float32 even when the model runs in bf16/fp16: sentence-transformers keeps
        # half-precision outputs for cls/max/lasttoken; fp32 is at least as exact, and on the
        # CPU (fp32) the two are the same computation.
        features: dict[str, Any] = {"token_embeddings": hidden.float(), "attention_mask": attention_mask}
        lengths = torch.as_tensor(list(prompt_lengths), dtype=torch.int64, device=attention_mask.device)
        for module in self.modules.modules:
            if isinstance(module, PoolingModule):
                pooled = pool(features["token_embeddings"], attention_mask, lengths, module)
                features["sentence_embedding"] = torch.cat(pooled, dim=-1)
            elif isinstance(module, DenseModule):
                features[module.output_name] = self._dense[id(module)](features[module.input_name])
            elif isinstance(module, NormalizeModule):
                if normalize is False and module.output_name == "sentence_embedding":
                    continue  # the operator's normalize=False overrides the checkpoint
                features[module.output_name] = torch.nn.functional.normalize(features[module.input_name], p=2, dim=-1)
        embedding = features["sentence_embedding"]
        if self.modules.truncate_dim is not None:
            embedding = embedding[..., : self.modules.truncate_dim]
        if normalize:
            embedding = torch.nn.functional.normalize(embedding, p=2, dim=-1)
        return embedding


def pool(token_embeddings, attention_mask, prompt_lengths, module: PoolingModule) -> list:
    """sentence-transformers 6.3 `Pooling._forward_padded`, one tensor per mode in the module's order.

    The one generalisation: prompt_lengths is per row (sentence-transformers takes one int per
    batch); with one prompt per call the rows agree, and the result is the same.
    """
    import torch

    original_mask = attention_mask
    if not module.include_prompt and bool((prompt_lengths > 0).any()):
        attention_mask = _exclude_prompt(attention_mask, prompt_lengths)
    outputs = []
    batch, seq_len, hidden_dim = token_embeddings.shape
    for mode in module.modes:
        if mode == "cls":
            first = attention_mask.to(torch.int).argmax(dim=1)
            index = first.view(-1, 1, 1).expand(-1, 1, hidden_dim)
            outputs.append(torch.gather(token_embeddings, 1, index).squeeze(1))
        elif mode == "max":
            mask = attention_mask.unsqueeze(-1).expand_as(token_embeddings).to(token_embeddings.dtype)
            outputs.append(token_embeddings.masked_fill(mask == 0, float("-inf")).max(dim=1).values)
        elif mode in ("mean", "mean_sqrt_len_tokens"):
            mask = attention_mask.unsqueeze(-1).to(token_embeddings.dtype)
            total = (token_embeddings * mask).sum(dim=1)
            count = torch.clamp(mask.sum(dim=1), min=1e-9)
            outputs.append(total / (count if mode == "mean" else torch.sqrt(count)))
        elif mode == "weightedmean":
            mask = attention_mask.unsqueeze(-1).to(token_embeddings.dtype)
            # Position weights 1, 2, ... counted from the first real token (after left padding);
            # excluding a prompt keeps the remaining tokens' weights.
            weights = torch.arange(1, seq_len + 1, device=token_embeddings.device, dtype=token_embeddings.dtype)
            pad_lengths = original_mask.to(torch.int32).argmax(dim=1)
            weighted_mask = mask * (weights.view(1, -1, 1) - pad_lengths.view(-1, 1, 1))
            total = (token_embeddings * weighted_mask).sum(dim=1)
            outputs.append(total / torch.clamp(weighted_mask.sum(dim=1), min=1e-9))
        elif mode == "lasttoken":
            # The last position whose mask is 1, from the right: right padding and left padding alike.
            values, from_end = attention_mask.flip(1).max(1)
            from_end = torch.where(values == 0, seq_len - 1, from_end)
            index = (seq_len - from_end - 1).view(-1, 1, 1).expand(-1, 1, hidden_dim)
            mask = attention_mask.unsqueeze(-1).expand_as(token_embeddings).to(token_embeddings.dtype)
            outputs.append(torch.gather(token_embeddings * mask, 1, index).squeeze(1))
        else:  # read_sentence_modules allows only POOLING_MODES
            raise ValueError(f"unknown pooling mode {mode!r}")
    return outputs


def _exclude_prompt(attention_mask, prompt_lengths):
    """Zero the prompt's positions, which start after any left padding (a copy; the model's mask
    is left alone)."""
    import torch

    pad_lengths = attention_mask.to(torch.int32).argmax(dim=1)
    positions = torch.arange(attention_mask.size(1), device=attention_mask.device).unsqueeze(0)
    prompt = positions < (pad_lengths + prompt_lengths).unsqueeze(1)
    return attention_mask.masked_fill(prompt, 0)


def _load_dense(module: DenseModule, load_options: LoadOptions, device):
    """A Dense module as a float32 function on the device, weights from its folder's safetensors."""
    import importlib

    import torch
    from safetensors.torch import load_file

    model = load_options.model
    where = f"{model!r}: Dense module in {module.path!r}"
    path = checkpoint_file(load_options, "model.safetensors", module.path)
    if path is None:
        if checkpoint_file(load_options, "pytorch_model.bin", module.path) is not None:
            raise ValueError(
                f"{where} has its weights only as pytorch_model.bin; taskray loads safetensors only "
                "(a pickle can run code when loaded). Convert it with safetensors.torch.save_file."
            )
        raise ValueError(f"{where} has no model.safetensors")
    weights = load_file(path, device="cpu")
    expected = {"linear.weight"} | ({"linear.bias"} if module.bias else set())
    if module.use_residual and module.in_features != module.out_features:
        expected.add("residual.weight")
    if set(weights) != expected:
        raise ValueError(f"{where}: weights {sorted(weights)} do not match its config (expected {sorted(expected)})")
    weight = weights["linear.weight"]
    if tuple(weight.shape) != (module.out_features, module.in_features):
        raise ValueError(
            f"{where}: linear.weight has shape {tuple(weight.shape)}, config says "
            f"({module.out_features}, {module.in_features})"
        )
    module_path, _, name = module.activation.rpartition(".")
    try:
        activation_class = getattr(importlib.import_module(module_path), name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"{where}: activation_function {module.activation!r} not found in torch") from e
    if not (isinstance(activation_class, type) and issubclass(activation_class, torch.nn.Module)):
        raise ValueError(f"{where}: activation_function {module.activation!r} is not a torch.nn.Module class")
    activation = activation_class().to(device)
    on_device = {k: v.to(device=device, dtype=torch.float32) for k, v in weights.items()}

    linear = torch.nn.functional.linear

    def dense(x):
        x = x.float()
        out = activation(linear(x, on_device["linear.weight"], on_device.get("linear.bias")))
        if module.use_residual:
            out = out + (linear(x, on_device["residual.weight"]) if "residual.weight" in on_device else x)
        return out

    return dense
