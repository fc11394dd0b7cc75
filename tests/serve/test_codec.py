"""Unit tier: request decoding, response shaping, Serve config and CLI flags. No Ray, no weights."""

from __future__ import annotations

import argparse
import base64

import pytest
import yaml

from operators import list_tasks
from pipelines.serve.codec import (
    RequestError,
    check_untyped_body,
    decode_base64,
    decode_inputs,
    embedding_root_options,
    jsonable,
    shape_results,
    shorten_embedding,
    sniff_media,
)
from pipelines.serve.config import (
    DEPLOYMENT_NAME,
    AppSpec,
    DeploymentOptions,
    EndpointArgs,
    ServeSpec,
    digest_auth_tokens,
    token_digest,
    validate_serve_config,
)
from tests.serve.conftest import SERVE_YAML

ALL_TASKS = {
    "audio-classification", "automatic-speech-recognition", "image-classification", "object-detection",
    "image-segmentation", "depth-estimation", "text-classification", "token-classification",
    "question-answering", "feature-extraction", "text-generation", "summarization", "translation",
}


def _error(fn, *args) -> RequestError:
    with pytest.raises(RequestError) as info:
        fn(*args)
    return info.value


def test_text_inputs_single_and_list():
    one = decode_inputs(("text",), "hi", 8)
    assert one.columns == {"text": ["hi"]} and one.fields == ["inputs"] and not one.is_list
    many = decode_inputs(("text",), ["a", "b"], 8)
    assert many.columns == {"text": ["a", "b"]} and many.fields == ["inputs[0]", "inputs[1]"] and many.is_list


@pytest.mark.parametrize(
    "inputs, message",
    [
        (5, "inputs: expected a string, got number"),
        (None, "inputs: expected a string, got null"),
        (["ok", {"a": 1}], "inputs[1]: expected a string, got object"),
        ([], "inputs: empty list"),
        (["x"] * 9, "inputs: at most 8 inputs per request, got 9"),
    ],
)
def test_text_input_errors_name_the_field(inputs, message):
    error = _error(decode_inputs, ("text",), inputs, 8)
    assert error.status == 422 and error.message == message


def test_question_answering_inputs():
    got = decode_inputs(("question", "context"), [{"question": "q", "context": "c"}], 8)
    assert got.columns == {"question": ["q"], "context": ["c"]}
    assert _error(decode_inputs, ("question", "context"), {"question": "q"}, 8).message == "inputs.context: field required"
    assert _error(decode_inputs, ("question", "context"), {"question": 1, "context": "c"}, 8).message == (
        "inputs.question: expected a string, got number"
    )
    assert _error(decode_inputs, ("question", "context"), "q", 8).message.startswith(
        'inputs: expected an object with "question", "context", got string'
    )
    assert _error(decode_inputs, ("question", "context"), {"question": "q", "context": "c", "x": 1}, 8).message == (
        "inputs.x: unexpected field; expected question, context"
    )


def test_media_inputs_are_base64_or_data_urls():
    data = b"\x89PNG\r\n\x1a\n-bytes"
    encoded = base64.b64encode(data).decode()
    assert decode_inputs(("image",), encoded, 8).columns == {"image": [data]}
    assert decode_base64(f"data:image/png;base64,{encoded}", "inputs") == data
    assert decode_base64(encoded[:8] + "\n" + encoded[8:], "inputs") == data
    assert _error(decode_base64, "not base64!", "inputs[2]").message.startswith("inputs[2]: invalid base64")
    assert _error(decode_base64, 12, "inputs").message == "inputs: expected a base64 string, got number"
    assert _error(decode_base64, "data:image/png,abc", "inputs").status == 422


def test_every_task_declares_its_response_shape():
    from operators import get_operator

    assert set(list_tasks()) == ALL_TASKS
    for task in ALL_TASKS:
        assert get_operator(task).response is not None, task  # not the all-columns fallback


def test_shapes_follow_pipeline():
    from operators import get_operator

    tc = {"label": ["a", "b"], "score": [0.9, 0.8], "scores": [None, None], "error": [None, None]}
    # one text: [pipeline(text)], the HF Inference API's [[{label, score}]] (InferenceClient reads [0])
    assert shape_results(get_operator("text-classification").response_shape(), ("label", "score", "scores"), tc, False) == [[{"label": "a", "score": 0.9}]]
    # pipeline(list of texts) without top_k gives one dict per text
    assert shape_results(get_operator("text-classification").response_shape(), ("label", "score", "scores"), tc, True) == [
        {"label": "a", "score": 0.9}, {"label": "b", "score": 0.8}]
    top = {"label": ["a"], "score": [0.9], "scores": [[{"label": "a", "score": 0.9}, {"label": "b", "score": 0.1}]],
           "error": [None]}
    assert shape_results(get_operator("text-classification").response_shape(), ("label", "score", "scores"), top, True) == [top["scores"][0]]
    depth = {"depth": [b"\x89PNG"], "predicted_depth": [[[1.0, 2.0]]], "error": [None]}
    assert shape_results(get_operator("depth-estimation").response_shape(), ("depth", "predicted_depth"), depth, False) == {
        "depth": base64.b64encode(b"\x89PNG").decode(), "predicted_depth": [[1.0, 2.0]]}
    qa = {"answer": ["x"], "score": [0.5], "start": [0], "end": [1], "answers": [None], "error": [None]}
    assert shape_results(get_operator("question-answering").response_shape(), ("answer", "score", "start", "end", "answers"), qa, False) == {
        "answer": "x", "score": 0.5, "start": 0, "end": 1}
    # an operator that declares no response answers with all of its columns
    from operators.base import Operator

    class NewTask(Operator):
        output_columns = ("x",)

    assert shape_results(NewTask.response_shape(), ("x",), {"x": [1], "error": [None]}, False) == {"x": 1}


def test_sniffed_media_types():
    from tests.operators import images, sounds

    picture = images.pixels(8, 6, 0)
    for fmt, name in (("JPEG", "JPEG"), ("PNG", "PNG"), ("GIF", "GIF"), ("WEBP", "WebP"), ("BMP", "BMP"), ("TIFF", "TIFF")):
        assert sniff_media(images.encode(picture, fmt)) == ("image", name)
    wave = sounds.clip(0, 0.2)
    for fmt, name in (("WAV", "WAV"), ("FLAC", "FLAC"), ("OGG", "Ogg")):
        assert sniff_media(sounds.encode(wave, fmt=fmt)) == ("audio", name)
    assert sniff_media(b"ID3\x04\x00") == ("audio", "MP3")
    assert sniff_media(b"\xff\xfb\x90\x00") == ("audio", "MP3")  # MPEG-1 layer III frame, no tag
    assert sniff_media(b"\xff\xf1\x50\x80") is None  # AAC (ADTS): layer bits 0
    assert sniff_media(b"RIFF\x00\x00\x00\x00AVI ") is None
    assert sniff_media(b'{"inputs": "x"}') is None and sniff_media(b"") is None


def test_untyped_body_must_be_the_endpoints_medium():
    from tests.operators import images, sounds

    png, wav = images.one_pixel_png(), sounds.encode(sounds.clip(1, 0.1))
    check_untyped_body(png, "image", "")
    check_untyped_body(wav, "audio", "application/octet-stream")
    ppm = b"P6\n1 1\n255\n\x00\x00\x00"  # no signature in our table: Pillow identifies it
    check_untyped_body(ppm, "image", "")
    wrong = _error(check_untyped_body, wav, "image", "")
    assert wrong.status == 415 and wrong.message == "body sent with no Content-Type looks like audio (WAV); this endpoint takes image"
    junk = _error(check_untyped_body, sounds.corrupt_bytes(), "audio", "application/octet-stream")
    assert junk.status == 415 and "Content-Type 'application/octet-stream' is not a recognised audio file" in junk.message
    json_body = _error(check_untyped_body, b'{"inputs": "aGk="}', "image", "")
    assert "a JSON body needs Content-Type: application/json" in json_body.message


def test_embedding_root_fields_and_dimensions():
    import numpy as np

    got = embedding_root_options({"normalize": True, "truncate": False, "prompt_name": "query", "dimensions": 2,
                                  "truncation_direction": "right", "encoding_format": "float"})
    assert got.parameters == {"normalize": True, "truncation": False, "prompt_name": "query"} and got.dimensions == 2
    assert embedding_root_options({}).parameters == {} and embedding_root_options({}).dimensions is None
    assert "only 'right'" in _error(embedding_root_options, {"truncation_direction": "left"}).message
    assert _error(embedding_root_options, {"encoding_format": "base64"}).status == 422
    assert _error(embedding_root_options, {"dimensions": 0}).message == "dimensions: expected a positive integer, got 0"
    assert _error(embedding_root_options, {"normalize": "yes"}).message == "normalize: expected a boolean, got string"
    assert shorten_embedding([3.0, 4.0, 12.0], 2, normalized=True) == pytest.approx([0.6, 0.8])
    assert shorten_embedding([3.0, 4.0, 12.0], 2, normalized=False) == [3.0, 4.0]
    assert shorten_embedding(np.float32([0.5, 0.25]), None, normalized=True) == [0.5, 0.25]
    assert _error(shorten_embedding, [1.0], 2, True).message == "dimensions: 2 exceeds the model's 1 dimensions"


def test_openai_embeddings_request_and_answer():
    import numpy as np

    from pipelines.serve.openai_api import OpenAIError, embeddings_response, parse_embeddings_request

    request = parse_embeddings_request({"input": "hi", "model": "m", "encoding_format": "base64", "dimensions": 2}, 8)
    answer = embeddings_response(request, [[3.0, 4.0, 0.0]], 5, "served-model", normalized=True)
    assert answer["object"] == "list" and answer["model"] == "served-model"
    assert answer["usage"] == {"prompt_tokens": 5, "total_tokens": 5}
    item = answer["data"][0]
    assert item["object"] == "embedding" and item["index"] == 0
    np.testing.assert_allclose(np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4"), [0.6, 0.8], rtol=1e-6)
    floats = embeddings_response(parse_embeddings_request({"input": ["a", "b"], "model": "m"}, 8), [[1.0], [2.0]], 3, "m", False)
    assert [d["embedding"] for d in floats["data"]] == [[1.0], [2.0]] and [d["index"] for d in floats["data"]] == [0, 1]
    for payload, param, fragment in [
        ({"model": "m"}, "input", "input: Field required"),
        ({"input": [1, 2], "model": "m"}, "input", "token-id arrays are not accepted"),
        ({"input": [], "model": "m"}, "input", "input: empty list"),
        ({"input": ["x"] * 9, "model": "m"}, "input", "at most 8 inputs"),
        ({"input": "x", "model": "m", "encoding_format": "int8"}, "encoding_format", "encoding_format: Input should be"),
        ({"input": "x", "model": "m", "dimensions": 0}, "dimensions", "dimensions: Input should be greater"),
        ({"input": "x", "model": "m", "extra": 1}, "extra", "extra: Extra inputs are not permitted"),
    ]:
        with pytest.raises(OpenAIError) as info:
            parse_embeddings_request(payload, 8)
        body = info.value.body()["error"]
        assert info.value.status == 400 and body["type"] == "invalid_request_error", payload
        assert body["param"] == param and fragment in body["message"], (payload, body)


def test_jsonable_converts_numpy_and_bytes():
    import numpy as np

    assert jsonable({"a": np.float32(0.5), "b": np.arange(3), "m": b"\x00\x01", "t": (1, 2)}) == {
        "a": 0.5, "b": [0, 1, 2], "m": "AAE=", "t": [1, 2]}


def test_example_serve_yaml_is_a_serve_config_for_every_task():
    config = yaml.safe_load(SERVE_YAML.read_text())
    validate_serve_config(config)  # Ray's own ServeDeploySchema plus taskray's args
    tasks = {a["args"]["task"] for a in config["applications"] if a.get("args", {}).get("task")}
    assert tasks == ALL_TASKS
    routes = [a["route_prefix"] for a in config["applications"]]
    assert len(routes) == len(set(routes)) and "/" in routes


def test_deployment_defaults_follow_batch_size():
    options = DeploymentOptions().to_serve(max_batch_size=8)
    assert options["max_ongoing_requests"] == 16 and options["max_queued_requests"] == 32
    assert options["autoscaling_config"]["target_ongoing_requests"] == 8.0
    assert options["backpressure_config"] == {"status_code": 503, "retry_after_s": 1.0}
    assert options["ray_actor_options"] == {"num_cpus": 1.0, "num_gpus": 0.0}
    assert DeploymentOptions(num_gpus=0.5, max_queued_requests=-1).to_serve(4)["max_queued_requests"] == -1


def test_args_are_checked_without_echoing_them():
    with pytest.raises(ValueError, match="unknown task"):
        EndpointArgs(task="nope", model="m")
    with pytest.raises(ValueError) as info:
        EndpointArgs(task="text-classification", model="m", auth_token="plain-secret-value")
    assert "plain-secret-value" not in str(info.value)


def test_tokens_reach_serve_only_as_digests():
    spec = ServeSpec(applications=[AppSpec(name="a", route_prefix="/v1/a", auth_token="tok-123",
                                           args=EndpointArgs(task="text-classification", model="m"))])
    config = spec.to_serve_config()
    assert "tok-123" not in repr(spec) and "tok-123" not in str(config)
    assert config["applications"][0]["args"]["auth_token_sha256"] == token_digest("tok-123")
    assert config["applications"][0]["deployments"][0]["name"] == DEPLOYMENT_NAME
    raw = {"applications": [{"name": "a", "import_path": "pipelines.serve.app:build_app",
                             "args": {"task": "text-classification", "model": "m", "auth_token": "tok-123"}}]}
    assert "tok-123" not in str(digest_auth_tokens(raw))
    validate_serve_config(raw)


def test_cli_flags_build_one_task_config(monkeypatch):
    from pipelines.commands import serve as command

    monkeypatch.delenv("TASKRAY_API_TOKEN", raising=False)
    parser = argparse.ArgumentParser()
    command.configure(parser)
    args = parser.parse_args(["--task", "text-classification", "--model", "/m", "--port", "8123",
                              "--max-batch-size", "8", "--num-gpus", "1", "--option", "top_k=2"])
    config = command.build_config(args)
    assert config["http_options"] == {"host": "127.0.0.1", "port": 8123}
    app, health = config["applications"]
    assert app["route_prefix"] == "/v1/text-classification" and health["route_prefix"] == "/"
    assert app["args"]["options"] == {"top_k": 2} and app["args"]["max_batch_size"] == 8
    assert app["deployments"][0]["ray_actor_options"]["num_gpus"] == 1
    assert app["deployments"][0]["max_ongoing_requests"] == 16
    with pytest.raises(ValueError, match="--task and --model"):
        command.build_config(parser.parse_args(["--task", "text-classification"]))
    yaml_args = parser.parse_args([str(SERVE_YAML), "--port", "9000"])
    assert command.build_config(yaml_args)["http_options"]["port"] == 9000


def _request(chunks: list[bytes], headers: dict[str, str]):
    from starlette.requests import Request

    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]

    async def receive():
        return messages.pop(0)

    scope = {"type": "http", "method": "POST", "path": "/", "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}
    return Request(scope, receive)


def test_body_limit_counts_streamed_bytes_and_trusts_no_header():
    import asyncio

    from pipelines.serve.app import read_body

    chunked = {"transfer-encoding": "chunked"}
    assert asyncio.run(read_body(_request([b"ab", b"cd"], chunked), 4)) == b"abcd"
    too_big = _error(asyncio.run, read_body(_request([b"ab", b"cd", b"e"], chunked), 4))
    assert too_big.status == 413 and "limit of 4 bytes" in too_big.message
    declared = _error(asyncio.run, read_body(_request([b"abcde"], {"content-length": "5"}), 4))
    assert declared.status == 413 and declared.message == "body of 5 bytes exceeds the limit of 4 bytes"
    assert _error(asyncio.run, read_body(_request([b""], {"content-length": "x"}), 4)).status == 400
    assert _error(asyncio.run, read_body(_request([b""], chunked), 4)).status == 411
