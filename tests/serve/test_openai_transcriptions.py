"""OpenAI's transcriptions API: POST /v1/audio/transcriptions at the Serve root, forwarded to
the automatic-speech-recognition application the `model` names (pipelines/serve/openai_api.py).

The session's Serve holds the example ASR application (the tiny wav2vec2 CTC model); the
`openai` client's answers must equal the offline operator's transcription of the same file.
Whisper's segments (verbose_json, srt, vtt) are checked on the offline Whisper operator's own
chunks, without a Whisper replica of its own (one process less on this 2-core machine).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from operators import get_operator

ASR = "automatic-speech-recognition"
SPEECH = Path(__file__).resolve().parents[1] / "fixtures" / "speech"


@pytest.fixture(scope="module")
def client(serve_url):
    from openai import OpenAI

    return OpenAI(base_url=f"{serve_url}/v1", api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def flac() -> dict[str, bytes]:
    return {name: (SPEECH / f"{name}.flac").read_bytes() for name in ("fox", "stella", "lecture")}


def test_transcriptions_equal_the_offline_transcription(client, flac, tiny_model):
    import soundfile

    model_dir = tiny_model(ASR)
    expected = get_operator(ASR)(model_dir)({"audio": [flac["fox"], flac["stella"]]})
    assert expected["error"] == [None, None] and all(expected["text"])
    # By application name, with the file as the client reads it from disk.
    with open(SPEECH / "fox.flac", "rb") as f:
        assert client.audio.transcriptions.create(model=ASR, file=f).text == expected["text"][0]
    # By model id; response_format text gives the text alone.
    text = client.audio.transcriptions.create(model=model_dir, file=("s.flac", flac["stella"]), response_format="text")
    assert text == expected["text"][1]
    verbose = client.audio.transcriptions.create(
        model=ASR, file=("fox.flac", flac["fox"]), response_format="verbose_json", temperature=0
    )
    assert verbose.text == expected["text"][0]
    assert verbose.duration == pytest.approx(soundfile.info(SPEECH / "fox.flac").duration, abs=1e-6)
    assert (verbose.task, verbose.language) == ("transcribe", None)  # CTC: no language to name
    assert getattr(verbose, "segments", None) is None  # none asked for


def test_bad_requests_say_what_was_wrong(client, flac, serve_url, tiny_model):
    import openai
    import requests

    def refused(**kwargs) -> str:
        with pytest.raises(openai.BadRequestError) as info:
            client.audio.transcriptions.create(**{"model": ASR, "file": ("fox.flac", flac["fox"]), **kwargs})
        return info.value.body["message"]

    assert refused(file=("junk.wav", b"not audio at all")).startswith("file: decode: cannot decode audio: ")
    assert refused(temperature=0.4).startswith("temperature: only 0 is served, got 0.4")
    assert refused(prompt="Stella").startswith("prompt: not served")
    assert refused(timestamp_granularities=["word"]).startswith("timestamp_granularities: word timestamps")
    assert refused(response_format="xml").startswith("response_format: Input should be 'json', 'text'")
    # Timestamps and languages are Whisper's: the CTC endpoint refuses them, naming why.
    for kwargs in ({"response_format": "srt"}, {"response_format": "verbose_json", "timestamp_granularities": ["segment"]}):
        assert refused(**kwargs) == (
            "timestamp_granularities: segment timestamps (and srt, vtt) need a Whisper model: return_timestamps "
            "applies to sequence-to-sequence models such as Whisper; "
            f"'{tiny_model(ASR)}' is a CTC model (the pipeline's CTC char/word timestamps are not implemented)"
        )
    assert refused(language="fr").startswith("language: language applies to sequence-to-sequence models")
    with pytest.raises(openai.NotFoundError, match="model: 'whisper-1' is not served here; available: "):
        client.audio.transcriptions.create(model="whisper-1", file=("fox.flac", flac["fox"]))
    url = f"{serve_url}/v1/audio/transcriptions"
    no_file = requests.post(url, files={"model": (None, ASR)}, timeout=60)
    assert (no_file.status_code, no_file.json()["error"]["message"]) == (400, "file: required: the audio file as a multipart upload")
    as_json = requests.post(url, json={"model": ASR, "file": "fox.flac"}, timeout=60)
    assert as_json.status_code == 400
    assert as_json.json()["error"]["message"] == "Content-Type: expected multipart/form-data (a file upload), got 'application/json'"


# ------------------------------------------------------------------ formats, without Serve


def form(**fields):
    """A multipart body and its Content-Type, as an HTTP client encodes the upload."""
    import httpx

    files = fields.pop("files", {"file": ("fox.flac", (SPEECH / "fox.flac").read_bytes(), "audio/flac")})
    request = httpx.Request("POST", "http://taskray/v1/audio/transcriptions", data=fields, files=files)
    return request.headers["content-type"], request.read()


async def parse(**fields):
    from pipelines.serve.openai_api import parse_transcription_upload

    return await parse_transcription_upload(*form(**fields))


def test_upload_parsing():
    import asyncio

    from pipelines.serve.openai_api import OpenAIError

    upload = asyncio.run(parse(model="m", language="fr", **{"timestamp_granularities[]": ["segment"]}))
    assert upload.audio == (SPEECH / "fox.flac").read_bytes() and upload.filename == "fox.flac"
    assert upload.request.operator_parameters() == {"language": "fr", "return_timestamps": True}
    assert asyncio.run(parse(model="m", response_format="vtt")).request.operator_parameters() == {"return_timestamps": True}
    assert asyncio.run(parse(model="m")).request.operator_parameters() == {}

    def error(**fields) -> str:
        with pytest.raises(OpenAIError) as info:
            asyncio.run(parse(**fields))
        assert info.value.status == 400
        return info.value.message

    assert error(files={"model": (None, "m")}) == "file: required: the audio file as a multipart upload"
    assert error(files={"file": ("e.wav", b"")}, model="m") == "file: empty upload"
    assert error(files={"file": (None, "fox.flac")}, model="m") == "file: expected a file upload, got a text field"
    assert error(files=[("file", ("a.wav", b"1")), ("file", ("b.wav", b"2"))], model="m").startswith(
        "body: malformed multipart form: Too many files"
    )
    assert error() == "model: Field required"
    assert error(model="m", chunking_strategy="auto").startswith("chunking_strategy: Extra inputs are not permitted")
    assert error(model="m", stream="true").startswith("stream: streamed transcriptions are not served")


def test_whisper_segments_as_verbose_json_srt_and_vtt(tiny_model, flac):
    from pipelines.serve.openai_api import TranscriptionRequest, transcription_response, transcription_result

    op = get_operator(ASR)(tiny_model(ASR, "whisper"), return_timestamps=True, num_beams=1, language="en")
    out = op({"audio": [flac["lecture"]]})
    assert out["error"] == [None]
    chunks = out["chunks"][0]
    result = transcription_result(op, flac["lecture"], out["text"][0], chunks)
    assert (result["language"], result["task"]) == ("english", "transcribe")
    assert result["duration"] == pytest.approx(32.7, abs=0.05)

    def answer(fmt: str, **fields):
        return transcription_response(TranscriptionRequest(model="m", response_format=fmt, **fields), result)

    body, media = answer("verbose_json", timestamp_granularities=["segment"])
    assert media == "application/json" and body["text"] == out["text"][0]
    expected = []
    for chunk in chunks:
        start, end = chunk["timestamp"]
        end = result["duration"] if end is None else end
        expected.append((start, max(start, end), chunk["text"]))
    assert [(s["start"], s["end"], s["text"]) for s in body["segments"]] == expected
    assert [s["id"] for s in body["segments"]] == list(range(len(chunks)))
    assert "segments" not in answer("verbose_json")[0]

    cues = [e for e in expected if e[2].strip()]
    assert cues, "the tiny Whisper should write some text between its timestamps"
    srt, media = answer("srt")
    assert media == "text/plain"
    blocks = srt.strip("\n").split("\n\n")
    assert len(blocks) == len(cues)
    for i, (block, (start, end, text)) in enumerate(zip(blocks, cues), 1):
        number, times, line = block.split("\n")
        assert number == str(i) and line == text.strip()
        assert times == f"{clock(start, ',')} --> {clock(end, ',')}"
    vtt, media = answer("vtt")
    assert media == "text/vtt" and vtt.startswith("WEBVTT\n\n")
    assert re.findall(r"(\d\d:\d\d:\d\d\.\d{3}) --> (\d\d:\d\d:\d\d\.\d{3})", vtt) == [
        (clock(s, "."), clock(e, ".")) for s, e, _ in cues
    ]


def clock(seconds: float, separator: str) -> str:
    whole, millis = divmod(round(seconds * 1000), 1000)
    return f"{whole // 3600:02d}:{whole // 60 % 60:02d}:{whole % 60:02d}{separator}{millis:03d}"


# Serve's ingress wrapper defines `async def __del__`, so dropping an instance made outside a
# replica leaves that coroutine unawaited; nothing of this test runs in it.
@pytest.mark.filterwarnings("ignore:coroutine .*ASGIIngressWrapper.__del__. was never awaited:RuntimeWarning")
def test_an_isolated_ingress_checks_the_request_against_the_checkpoint(tiny_model, flac):
    """With isolate_model the ingress holds no weights, but its operator's configuration is
    checked, so with_options checks each request against the checkpoint there: `language` for a
    CTC model is this request's 400 (POST {route}'s 422), not a failed batch on the model replica,
    and a bad option that reaches a batch anyway fails only its own requests."""
    import asyncio

    from pipelines.serve.app import TaskEndpoint, endpoint_operator, endpoint_runner
    from pipelines.serve.config import EndpointArgs

    endpoint = object.__new__(TaskEndpoint.func_or_class)  # the replica's state, without Serve
    endpoint.args = EndpointArgs(task=ASR, model=tiny_model(ASR))
    endpoint.op = endpoint_operator(endpoint.args).checked()
    status, body, _ = asyncio.run(endpoint.forwarded_transcription(flac["fox"], {"language": "fr"}))
    assert (status, body["error"]["param"]) == (400, "language")
    assert body["error"]["message"].startswith("language: language applies to sequence-to-sequence models such as Whisper")

    from pipelines.serve.app import Job, run_jobs
    from pipelines.serve.codec import RequestError

    with pytest.raises(RequestError) as refused:
        endpoint._check_parameters({"language": "fr"})
    assert refused.value.status == 422 and "language" in str(refused.value)
    loaded = endpoint_runner(endpoint.args)
    good, bad = Job({"audio": [flac["fox"]]}, {}), Job({"audio": [flac["fox"]]}, {"language": "fr"})
    results = run_jobs(loaded, [bad, good])
    assert isinstance(results[0], BaseException) and "language" in str(results[0])
    assert results[1]["error"] == [None] and isinstance(results[1]["text"][0], str)
