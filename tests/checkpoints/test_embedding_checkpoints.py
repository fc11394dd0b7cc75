"""feature-extraction on sentence-transformers checkpoints laid out as the hub's are, against
SentenceTransformer.encode loading the same directory.

Each checkpoint is built offline by SentenceTransformer(modules=[...]).save(), which writes
modules.json and the module folders exactly as published checkpoints have them; a few are then
rewritten in the legacy (v2-v5) file format that most hub checkpoints still use. The hub models
they stand for:

* bge: BAAI/bge-small-en-v1.5 (CLS pooling + Normalize, do_lower_case), with the real MiniLM
  weights and WordPiece tokenizer so that the oracle is a real model.
* minilm: sentence-transformers/all-MiniLM-L6-v2 as shipped (mean + Normalize).
* distiluse / labse: sentence-transformers/distiluse-base-multilingual-cased-v2 (mean + Dense
  tanh) and sentence-transformers/LaBSE (CLS + Dense + Normalize).
* dense-residual: sentence-transformers 6's residual Dense projections (no hub model yet).
* matryoshka: a truncate_dim saved with the model (nomic-ai/nomic-embed-text-v1.5 style Matryoshka).
* e5: intfloat/e5-* style "query: " / "passage: " prompts, here with a default prompt name.
* instructor: hkunlp/instructor-* style (prompt excluded from mean pooling).
* gte-qwen2 / decoder-right: Alibaba-NLP/gte-Qwen2-*-instruct and intfloat/e5-mistral-7b-instruct
  style decoder embedders (last-token pooling), padded left and right.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from operators import get_operator

COSINE_MIN = 0.9999  # the acceptance bar against encode()
# fp32 on the CPU: the same sums in another order (other micro-batches, other padding).
RTOL, ATOL = 1e-4, 1e-5

PROSE = [
    "The museum reopened on Saturday after a two-year renovation of its east wing.",
    "Rain is expected tonight.",
    "She picked up the violin again at forty and now plays in a community orchestra every Thursday evening.",
    "How do I reset my password if I no longer have access to the email address on my account?",
    "Bees tell their hive mates where flowers are with a series of movements known as the waggle dance, "
    "which encodes both the direction and the distance of the food.",
    "Thanks!",
    "The committee postponed its decision until the auditors deliver their report in March.",
]

GTE_QWEN2_QUERY = "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery: "
BGE_QUERY = "Represent this sentence for searching relevant passages: "


# ---------------------------------------------------------------------- checkpoints


def _st_modules():
    from sentence_transformers.sentence_transformer import modules

    return modules


def save(modules: list, out: str, **model_kwargs) -> str:
    import torch
    from sentence_transformers import SentenceTransformer

    torch.manual_seed(0)  # Dense layers initialise randomly
    SentenceTransformer(modules=modules, device="cpu", **model_kwargs).save(out, create_model_card=False)
    # Safetensors only: the transformer and every Dense folder, never a pickle.
    for folder, _, files in os.walk(out):
        assert not [f for f in files if f.endswith((".bin", ".pt", ".pth"))], (folder, files)
    assert os.path.exists(os.path.join(out, "model.safetensors"))
    return out


def _as_legacy_hub_files(out: str, *, pooling: dict | None = None, transformer: dict | None = None) -> None:
    """Rewrite a v6 save in the format of hub checkpoints saved by sentence-transformers <= 5:
    `sentence_transformers.models.*` types, boolean pooling keys, max_seq_length/do_lower_case."""
    path = os.path.join(out, "modules.json")
    with open(path) as f:
        modules = json.load(f)
    for m in modules:
        m["type"] = "sentence_transformers.models." + m["type"].rsplit(".", 1)[1]
    with open(path, "w") as f:
        json.dump(modules, f, indent=2)
    if pooling is not None:
        with open(os.path.join(out, "1_Pooling", "config.json"), "w") as f:
            json.dump(pooling, f, indent=2)
    if transformer is not None:
        with open(os.path.join(out, "sentence_bert_config.json"), "w") as f:
            json.dump(transformer, f, indent=2)


def _decoder(out: str, padding_side: str) -> str:
    """A tiny Qwen2 embedder base: byte-level BPE that appends <|endoftext|> (also the pad
    token), as gte-Qwen2's tokenizer does, with the given padding side."""
    import torch
    from tokenizers import processors
    from transformers import Qwen2Config, Qwen2Model

    from tiny_models.tokenizers import byte_level_bpe_tokenizer

    tokenizer = byte_level_bpe_tokenizer()
    eos = tokenizer.eos_token
    tokenizer.pad_token = eos
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"$A {eos}", special_tokens=[(eos, tokenizer.eos_token_id)]
    )
    torch.manual_seed(1)
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
    )
    Qwen2Model(config).eval().save_pretrained(out)
    tokenizer.save_pretrained(out)
    # transformers saves padding_side only when it was a constructor argument.
    path = os.path.join(out, "tokenizer_config.json")
    with open(path) as f:
        tokenizer_config = json.load(f)
    tokenizer_config["padding_side"] = padding_side
    with open(path, "w") as f:
        json.dump(tokenizer_config, f, indent=2)
    return out


def _build(name: str, out: str, bert: str, minilm: str) -> str:
    m = _st_modules()
    if name == "minilm":
        return minilm
    if name == "bge":
        save([m.Transformer(minilm), m.Pooling(384, pooling_mode="cls"), m.Normalize()], out)
        _as_legacy_hub_files(
            out,
            pooling={
                "word_embedding_dimension": 384, "pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False,
                "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False,
            },
            transformer={"max_seq_length": 512, "do_lower_case": True},
        )
        return out
    if name in ("max", "mean_sqrt_len_tokens", "weightedmean"):
        return save([m.Transformer(bert), m.Pooling(32, pooling_mode=name)], out)
    if name == "matryoshka":
        # truncate_dim in config_sentence_transformers.json: cut after Normalize, as encode() does.
        return save([m.Transformer(bert), m.Pooling(32, pooling_mode="mean"), m.Normalize()], out, truncate_dim=20)
    if name == "multi-legacy":
        # Four modes enabled by the old boolean keys: concatenated in sentence-transformers' key order.
        save([m.Transformer(bert), m.Pooling(32, pooling_mode="mean")], out)
        _as_legacy_hub_files(out, pooling={
            "word_embedding_dimension": 32, "pooling_mode_mean_tokens": True, "pooling_mode_cls_token": True,
            "pooling_mode_mean_sqrt_len_tokens": True, "pooling_mode_max_tokens": True,
        })
        return out
    if name == "multi-prompt-excluded":
        pooling = m.Pooling(32, pooling_mode=("weightedmean", "cls", "lasttoken", "max"), include_prompt=False)
        return save([m.Transformer(bert), pooling], out)
    if name == "instructor":
        return save(
            [m.Transformer(bert), m.Pooling(32, pooling_mode="mean", include_prompt=False), m.Normalize()], out,
            prompts={"query": "Represent the question for retrieving supporting documents: "},
            default_prompt_name="query",
        )
    if name == "e5":
        return save(
            [m.Transformer(bert), m.Pooling(32, pooling_mode="mean"), m.Normalize()], out,
            prompts={"query": "query: ", "passage": "passage: "}, default_prompt_name="query",
        )
    if name == "distiluse":
        return save([m.Transformer(bert), m.Pooling(32, pooling_mode="mean"), m.Dense(32, 16)], out)
    if name == "labse":
        import torch

        dense = m.Dense(32, 24, activation_function=torch.nn.Identity())
        return save([m.Transformer(bert), m.Pooling(32, pooling_mode="cls"), dense, m.Normalize()], out)
    if name == "dense-residual":
        import torch

        # sentence-transformers 6's residual Dense: projected (32 -> 24) and identity (24 -> 24).
        denses = [
            m.Dense(32, 24, use_residual=True),
            m.Dense(24, 24, activation_function=torch.nn.GELU(), use_residual=True),
        ]
        return save([m.Transformer(bert), m.Pooling(32, pooling_mode="mean"), *denses], out)
    if name == "gte-qwen2-left":
        base = _decoder(out + "-base", "left")
        return save(
            [m.Transformer(base), m.Pooling(32, pooling_mode="lasttoken"), m.Normalize()], out,
            prompts={"query": GTE_QWEN2_QUERY},
        )
    if name == "decoder-right":
        base = _decoder(out + "-base", "right")
        save([m.Transformer(base), m.Pooling(32, pooling_mode="lasttoken")], out)
        # A cased tokenizer, lowercased and cut at 16 tokens by the checkpoint's legacy config.
        _as_legacy_hub_files(out, transformer={"max_seq_length": 16, "do_lower_case": True})
        return out
    raise ValueError(f"no checkpoint named {name!r}")


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory, tiny_model, minilm_path):
    """checkpoint(name) -> directory of a saved sentence-transformers checkpoint, built once."""
    root = tmp_path_factory.mktemp("sentence-checkpoints")
    built: dict[str, str] = {}

    def build(name: str) -> str:
        if name not in built:
            built[name] = _build(name, str(root / name), tiny_model("feature-extraction"), minilm_path)
        return built[name]

    return build


@pytest.fixture(scope="session")
def loaded(checkpoint):
    """loaded(name) -> (our operator, SentenceTransformer), each loaded once from the directory."""
    from sentence_transformers import SentenceTransformer

    cache: dict[str, tuple] = {}

    def load(name: str):
        if name not in cache:
            path = checkpoint(name)
            cache[name] = (
                get_operator("feature-extraction")(path, max_batch_rows=3).load(),
                SentenceTransformer(path, device="cpu"),
            )
        return cache[name]

    return load


def assert_same_embeddings(got, reference) -> None:
    got, reference = np.asarray(got, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    assert got.shape == reference.shape
    cosine = (got * reference).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(reference, axis=1))
    assert cosine.min() >= COSINE_MIN, cosine
    # Cosine alone would pass mean for mean_sqrt_len_tokens, or a missing Normalize: compare values too.
    np.testing.assert_allclose(got, reference, rtol=RTOL, atol=ATOL)


# ---------------------------------------------------------------------- parity

CASES = [
    ("minilm", {}),
    ("bge", {}),
    ("bge", {"prompt": BGE_QUERY}),
    ("max", {}),
    ("mean_sqrt_len_tokens", {}),
    ("weightedmean", {}),
    ("multi-legacy", {}),
    ("multi-prompt-excluded", {"prompt": "Summarize the following sentence for a news digest: "}),
    ("instructor", {}),
    ("instructor", {"prompt": "Represent the sentence: "}),
    ("e5", {}),
    ("e5", {"prompt_name": "passage"}),
    ("e5", {"prompt": ""}),
    ("distiluse", {}),
    ("labse", {}),
    ("dense-residual", {}),
    ("matryoshka", {}),
    ("gte-qwen2-left", {}),
    ("gte-qwen2-left", {"prompt_name": "query"}),
    ("decoder-right", {}),
]


@pytest.mark.parametrize("name,prompt", CASES, ids=[f"{n}-{'-'.join(p) or 'default'}" for n, p in CASES])
def test_matches_sentence_transformers_encode(loaded, name, prompt):
    op, reference = loaded(name)
    out = op.with_options(**prompt)({"text": PROSE})
    assert out["error"] == [None] * len(PROSE)
    # batch_size 4 pads on the tokenizer's side (left for gte-qwen2-left); ours pads right, 3 rows.
    assert_same_embeddings(out["embedding"], reference.encode(PROSE, batch_size=4, **prompt))


def test_checkpoint_settings_are_read(loaded):
    """The files say what the parity runs rely on; check that each setting really applies."""
    bge, _ = loaded("bge")
    assert bge.normalize and bge.max_tokens() == 512
    right, reference = loaded("decoder-right")
    assert reference.tokenizer.padding_side == "right" and loaded("gte-qwen2-left")[1].tokenizer.padding_side == "left"
    assert right.max_tokens() == 16 and not right.normalize
    lengths = [len(f["input_ids"]) for f in right.preprocess({"text": PROSE})["features"]]
    assert max(lengths) == 16 and min(lengths) < 16  # long sentences truncated, short ones not
    # do_lower_case on a cased tokenizer: "The" and "the" become the same tokens.
    assert right.processor("The Museum")["input_ids"] == right.processor("the museum")["input_ids"]
    e5, _ = loaded("e5")
    assert e5.prompt_text == "query: " and e5.with_options(prompt_name="passage").prompt_text == "passage: "
    instructor, _ = loaded("instructor")
    assert instructor.preprocess({"text": PROSE[:1]})["features"][0]["prompt_length"] > 5
    assert loaded("labse")[0].sentence_modules().modules[1].out_features == 24
    assert len(loaded("matryoshka")[0]({"text": PROSE[:1]})["embedding"][0]) == 20


def test_normalize_false_overrides_the_checkpoint(loaded):
    op, reference = loaded("labse")
    raw = np.asarray(op.with_options(normalize=False)({"text": PROSE})["embedding"])
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0, atol=1e-3)
    normalized = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    assert_same_embeddings(normalized, reference.encode(PROSE, batch_size=4))


# ---------------------------------------------------------------------- configuration errors


@pytest.mark.parametrize(
    "position,module_type",
    [
        (1, "sentence_transformers.models.CNN"),
        (1, "sentence_transformers.models.LayerNorm"),
        (1, "sentence_transformers.models.WeightedLayerPooling"),
        (1, "my_package.pooling.AttentionPooling"),
        (0, "sentence_transformers.models.WordEmbeddings"),
        (0, "sentence_transformers.models.StaticEmbedding"),
        (0, "sentence_transformers.base.modules.router.Router"),
    ],
)
def test_unknown_module_type_is_a_load_error_naming_it(checkpoint, tmp_path, position, module_type):
    path = str(tmp_path / "checkpoint")
    shutil.copytree(checkpoint("distiluse"), path)
    modules_path = os.path.join(path, "modules.json")
    with open(modules_path) as f:
        modules = json.load(f)
    if position == 0:
        modules[0]["type"] = module_type
    else:
        modules.insert(position, {"idx": position, "name": "x", "path": "1_Extra", "type": module_type})
    with open(modules_path, "w") as f:
        json.dump(modules, f)

    op = get_operator("feature-extraction")(path)
    with pytest.raises(ValueError, match=module_type.replace(".", r"\.")) as raised:
        op.check_config()  # what the job driver and every stage run first: no weights
    assert path in str(raised.value)
    with pytest.raises(ValueError, match="does not implement"):
        _ = op.processor  # the tokenizer never loads without its modules
    with pytest.raises(ValueError, match="does not implement"):
        op({"text": PROSE[:2]})  # the call fails, not each row
    assert op._model is None


def test_prompt_name_the_checkpoint_lacks_is_a_clear_error(checkpoint, loaded):
    from pydantic import ValidationError

    path = checkpoint("e5")
    op = get_operator("feature-extraction")(path, prompt_name="search_query")
    with pytest.raises(ValueError) as raised:
        op.load()
    message = str(raised.value)
    assert "prompt_name='search_query'" in message and path in message
    assert "['document', 'passage', 'query']" in message
    assert op._model is None  # refused before any weights
    op, _ = loaded("e5")
    with pytest.raises(ValidationError, match="prompt_name"):  # Serve answers a 422
        op.with_options(prompt_name="search_query")
    with pytest.raises(ValidationError, match="prompt or prompt_name, not both"):
        get_operator("feature-extraction")(path, prompt="query: ", prompt_name="query")


def test_dense_weights_as_pickle_are_refused(checkpoint, tmp_path):
    import torch
    from safetensors.torch import load_file

    path = str(tmp_path / "checkpoint")
    shutil.copytree(checkpoint("distiluse"), path)
    dense = os.path.join(path, "2_Dense")
    torch.save(load_file(os.path.join(dense, "model.safetensors")), os.path.join(dense, "pytorch_model.bin"))
    os.remove(os.path.join(dense, "model.safetensors"))
    op = get_operator("feature-extraction")(path)
    assert op.preprocess({"text": PROSE[:1]})["error"] == [None]  # the CPU stage needs no weights
    with pytest.raises(ValueError, match="pytorch_model.bin; taskray loads safetensors only"):
        op.load()
