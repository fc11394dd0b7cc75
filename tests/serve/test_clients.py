"""The clients people already have, against the session's example endpoints on 127.0.0.1:
huggingface_hub's InferenceClient (every typed method of a served task, as a new user calls
it: no parameters, so media go as raw bytes with no Content-Type) and the openai package's
embeddings API. Answers are compared with transformers.pipeline (tests/serve/references.py)."""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import pytest
import requests

from tests.serve.references import FLOAT_TOL, assert_matches


@contextlib.contextmanager
def loopback_client(serve_url: str, task: str):
    """An InferenceClient for one endpoint. huggingface_hub refuses every request while
    HF_HUB_OFFLINE is set (the test session sets it), loopback included; it is lifted only
    around calls to our own 127.0.0.1 URL, after the references were computed."""
    import huggingface_hub.constants as hub_constants
    from huggingface_hub import InferenceClient

    offline = hub_constants.HF_HUB_OFFLINE
    hub_constants.HF_HUB_OFFLINE = False
    try:
        # An explicit token: the client would otherwise send a locally cached Hub token.
        yield InferenceClient(model=f"{serve_url}/v1/{task}", token="not-a-hub-token", timeout=120)
    finally:
        hub_constants.HF_HUB_OFFLINE = offline


# task -> how a new user calls it with the task's first test input
CALLS = {
    "text-classification": lambda c, x: c.text_classification(x),
    "token-classification": lambda c, x: c.token_classification(x),
    "question-answering": lambda c, x: c.question_answering(question=x["question"], context=x["context"]),
    "feature-extraction": lambda c, x: c.feature_extraction(x),
    # greedy: the endpoint samples by default, and parity is checked greedy (references.py)
    "text-generation": lambda c, x: c.text_generation(x, do_sample=False),
    "summarization": lambda c, x: c.summarization(x),
    "translation": lambda c, x: c.translation(x),
    "image-classification": lambda c, x: c.image_classification(x),
    "object-detection": lambda c, x: c.object_detection(x),
    "image-segmentation": lambda c, x: c.image_segmentation(x),
    "automatic-speech-recognition": lambda c, x: c.automatic_speech_recognition(x),
    "audio-classification": lambda c, x: c.audio_classification(x),
}


def _pipeline_answer(task: str, single):
    """What the typed method returns, from pipeline(input): the methods for generation tasks
    return the one record (or its text) of pipeline()'s one-item list."""
    if task == "text-generation":
        return single[0]["generated_text"]
    if task in ("summarization", "translation"):
        return single[0]
    return single


@pytest.mark.parametrize("task", sorted(CALLS))
def test_inference_client_method_equals_pipeline(serve_url, reference, task):
    ref = reference(task)
    with loopback_client(serve_url, task) as client:
        got = CALLS[task](client, ref.inputs[0])
    want = _pipeline_answer(task, ref.single)
    if task == "feature-extraction":
        np.testing.assert_allclose(got, want, atol=FLOAT_TOL)
    else:
        assert_matches(got, want, task)


def test_text_generation_options_and_tgi_only_parameters(serve_url, reference):
    from huggingface_hub.errors import HfHubHTTPError

    ref = reference("text-generation")
    prompt, continuation = ref.inputs[0], ref.single[0]["generated_text"]
    with loopback_client(serve_url, "text-generation") as client:
        full = client.text_generation(prompt, do_sample=False, return_full_text=True)
        # TGI-only parameters: the endpoint answers 400 naming them as unused model_kwargs,
        # and the client drops them with a warning and asks again.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            dropped = client.text_generation(prompt, do_sample=False, stop=["zzz"], watermark=True)
        # refused by the endpoint (422), or by the client itself once it knows the server is not TGI
        with pytest.raises((HfHubHTTPError, ValueError), match="stream"):
            client.text_generation(prompt, do_sample=False, stream=True)
    assert full == prompt + continuation
    assert dropped == continuation
    assert any("stop, watermark" in str(w.message) for w in caught), [str(w.message) for w in caught]


def test_inference_client_with_parameters(serve_url, reference):
    """With parameters, media go as base64 JSON; feature-extraction's TEI fields sit beside inputs."""
    images = reference("image-classification")
    embeddings = reference("feature-extraction")
    with loopback_client(serve_url, "image-classification") as client:
        top2 = client.image_classification(images.inputs[0], top_k=2)
    with loopback_client(serve_url, "feature-extraction") as client:
        short = client.feature_extraction(embeddings.inputs[0], normalize=True, dimensions=4)
    assert_matches(top2, images.single[:2])
    want = embeddings.single[:4] / np.linalg.norm(embeddings.single[:4])
    np.testing.assert_allclose(short, want, atol=FLOAT_TOL)


@pytest.fixture(scope="module")
def openai_client(serve_url):
    from openai import OpenAI

    return OpenAI(base_url=f"{serve_url}/v1/feature-extraction", api_key="unused", max_retries=0, timeout=120)


def test_openai_embeddings_equal_pipeline(openai_client, reference, tiny_model):
    from transformers import AutoTokenizer

    ref = reference("feature-extraction")
    texts = ref.inputs
    default = openai_client.embeddings.create(model="tiny", input=texts)  # the client asks for base64
    assert [d.index for d in default.data] == list(range(len(texts)))
    np.testing.assert_allclose(np.asarray([d.embedding for d in default.data]), np.asarray(ref.many), atol=FLOAT_TOL)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model("feature-extraction"))
    tokens = sum(len(ids) for ids in tokenizer(texts, truncation=True)["input_ids"])
    assert default.usage.prompt_tokens == default.usage.total_tokens == tokens
    assert default.model == tiny_model("feature-extraction")

    one = openai_client.embeddings.create(model="tiny", input=texts[1], encoding_format="float", dimensions=4)
    # the tiny model's embeddings are not normalized, so `dimensions` only cuts them
    np.testing.assert_allclose(one.data[0].embedding, ref.many[1][:4], atol=FLOAT_TOL)


def test_openai_errors(openai_client, serve_url):
    import openai

    for kwargs, param in [({"input": []}, "input"), ({"input": ["ok", "  "]}, "input"),
                          ({"input": "x", "dimensions": 10**6}, "dimensions")]:
        with pytest.raises(openai.BadRequestError) as info:
            openai_client.embeddings.create(model="tiny", **kwargs)
        error = info.value.body
        assert error["type"] == "invalid_request_error" and error["param"] == param, (kwargs, error)
    other = requests.post(f"{serve_url}/v1/text-classification/embeddings", json={"input": "x", "model": "m"}, timeout=60)
    assert other.status_code == 404 and "feature-extraction" in other.json()["error"]["message"]


# ------------------------------------------------------------------ POST /v1/embeddings (root app)


def _root_client(serve_url: str, api_key: str = "unused"):
    from openai import OpenAI

    return OpenAI(base_url=f"{serve_url}/v1", api_key=api_key, max_retries=0, timeout=120)


def test_openai_root_embeddings_equal_endpoint_route(openai_client, serve_url, tiny_model, reference):
    """OpenAI(base_url=".../v1") as is: the root forwards to the application `model` names
    (model id or application name) and answers what its {route}/embeddings answers."""
    texts = reference("feature-extraction").inputs[:2]
    model = tiny_model("feature-extraction")
    want = openai_client.embeddings.create(model="any", input=texts, encoding_format="float")
    root = _root_client(serve_url)
    for name in (model, "feature-extraction"):
        got = root.embeddings.create(model=name, input=texts)  # base64, as the client asks by default
        assert got.model == want.model == model
        assert got.usage == want.usage
        np.testing.assert_allclose([d.embedding for d in got.data], [d.embedding for d in want.data], atol=FLOAT_TOL)
    listed = root.models.list().data  # without the token: only the open application
    assert [(m.id, m.model_extra["application"]) for m in listed] == [(model, "feature-extraction")]


def test_openai_root_unknown_model_and_token(serve_url, tiny_model, reference):
    import openai

    from tests.serve.conftest import AUTH_TOKEN, SECURE_EMBEDDINGS_APP

    model = tiny_model("feature-extraction")
    with pytest.raises(openai.NotFoundError) as info:
        _root_client(serve_url).embeddings.create(model="no-such-model", input="x")
    error = info.value.body
    assert error["code"] == "model_not_found" and error["param"] == "model", error
    # the 404 lists what the caller may use: not the application behind a token
    assert repr(model) in error["message"] and SECURE_EMBEDDINGS_APP not in error["message"], error

    # The application behind a token: 401 without it, as on its own route.
    with pytest.raises(openai.AuthenticationError):
        _root_client(serve_url).embeddings.create(model=SECURE_EMBEDDINGS_APP, input="x")
    direct = requests.post(f"{serve_url}/v1/test/secure-embeddings/embeddings", json={"input": "x", "model": "m"}, timeout=60)
    assert direct.status_code == 401
    secure = _root_client(serve_url, AUTH_TOKEN)
    got = secure.embeddings.create(model=SECURE_EMBEDDINGS_APP, input=reference("feature-extraction").inputs[0])
    np.testing.assert_allclose(got.data[0].embedding, reference("feature-extraction").many[0], atol=FLOAT_TOL)
    # with the token both applications serve the model id: the application name must choose
    with pytest.raises(openai.BadRequestError, match=SECURE_EMBEDDINGS_APP):
        secure.embeddings.create(model=model, input="x")
    assert {m.model_extra["application"] for m in secure.models.list().data} == {"feature-extraction", SECURE_EMBEDDINGS_APP}


def test_choose_endpoint_without_feature_extraction_endpoints():
    from pipelines.serve.openai_api import OpenAIError, choose_endpoint

    with pytest.raises(OpenAIError) as info:
        choose_endpoint("any", [])
    assert info.value.status == 404 and info.value.body()["error"]["code"] == "model_not_found"
