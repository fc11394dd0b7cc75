"""`taskray report` end to end: a finished multi-task output (tests/report/conftest.py) becomes
one page, which a real headless Chromium opens from disk. The page must load with no console
error and no request, show every sampled row and failed row, decode every image and audio
clip, and keep hostile ids as text; what each card and chart shows must equal the output's
values. The screenshot lands in .test-artifacts/report.png."""

from __future__ import annotations

import os
import re
from html.parser import HTMLParser

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from pipelines.cli import main as taskray
from pipelines.report import write_report
from pipelines.report.sampling import sample_indices
from tests.report.chromium import Chromium, find_chromium
from tests.report.conftest import GALLERY_SAMPLE, HOSTILE_ID, TASKS

ARTIFACTS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), ".test-artifacts")
# Opening a 1-2 MB page and waiting for its media takes a few seconds; a shared box is slower.
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def report(job_output):
    os.makedirs(ARTIFACTS, exist_ok=True)
    return write_report(job_output, os.path.join(ARTIFACTS, "report.html"), sample=GALLERY_SAMPLE, seed=0)


def expected_samples(output: str) -> dict[str, list[str]]:
    """Each task's gallery worked out from the Parquet files alone."""
    table = pq.read_table(output)
    want = {}
    for t in TASKS:
        ok = table.filter(pc.is_null(table.column(f"{t['task']}.error")))
        ids = ok.column("id").to_pylist()
        want[t["task"]] = sorted(ids[i] for i in sample_indices(ids, GALLERY_SAMPLE, seed=0))
    return want


def test_gallery_is_the_seeded_sample_of_ok_rows(report, job_output):
    want = expected_samples(job_output)
    assert {k: sorted(v) for k, v in report.sampled.items()} == want
    assert all(len(v) == GALLERY_SAMPLE for v in want.values())  # each task has more ok rows than that
    table = pq.read_table(job_output)
    for t in TASKS:
        errors = table.column(f"{t['task']}.error").to_pylist()
        failed = sorted(i for i, e in zip(table.column("id").to_pylist(), errors) if e is not None)
        assert report.failed_shown[t["task"]] == failed and failed  # every task has a bad row


@pytest.fixture(scope="module")
def browser():
    binary = find_chromium()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/install installs Debian's chromium")
        pytest.skip("needs Debian's chromium (apt-get install chromium; .ci/install does it in CI)")
    with Chromium(binary, width=1280, height=900) as chromium:
        yield chromium


PAGE_FACTS = """(async () => {
  const cards = {};
  for (const c of document.querySelectorAll('article.card')) (cards[c.dataset.task] ||= []).push(c.dataset.rowId);
  const audios = Array.from(document.querySelectorAll('audio'));
  const durations = await Promise.all(audios.map(a => new Promise(done => {
    if (a.readyState >= 1) return done(a.duration);
    a.addEventListener('loadedmetadata', () => done(a.duration));
    a.addEventListener('error', () => done(-1));
    a.load();
  })));
  const imgs = Array.from(document.images);
  await Promise.all(imgs.map(i => i.decode().catch(() => null)));
  const section = id => document.getElementById('task-' + id);
  return {
    cards,
    images: imgs.map(i => [i.alt, i.naturalWidth, i.naturalHeight]),
    durations,
    audioBySection: Object.fromEntries(['automatic-speech-recognition', 'audio-classification'].map(
        s => [s, section(s).querySelectorAll('audio').length])),
    marks: Object.fromEntries(['token-classification', 'question-answering'].map(
        s => [s, section(s).querySelectorAll('.card mark').length])),
    summaries: Array.from(section('summarization').querySelectorAll('.card .output')).map(e => e.textContent),
    failed: Object.fromEntries(Array.from(document.querySelectorAll('section.task')).map(
        s => [s.id, Array.from(s.querySelectorAll('table.failed tr')).slice(1).map(r => [r.cells[0].textContent, r.cells[1].textContent])])),
    rowIdElements: document.querySelectorAll('.row-id *').length,
    scripts: document.scripts.length,
    resources: performance.getEntriesByType('resource').map(r => r.name),
    charts: document.querySelectorAll('svg.chart').length,
  };
})()"""


def test_page_opens_in_chromium(report, job_output, browser):
    browser.open("file://" + report.path)
    facts = browser.evaluate(PAGE_FACTS)
    shot = os.path.join(ARTIFACTS, "report.png")
    browser.screenshot(shot)
    print(f"\nreport screenshot: {shot}\nreport page: {report.path}")
    assert browser.console_errors() == []
    assert facts["scripts"] == 0 and facts["resources"] == []  # nothing runs, nothing is fetched

    assert {task: sorted(ids) for task, ids in facts["cards"].items()} == expected_samples(job_output)
    assert facts["images"] and all(w > 0 and h > 0 for _, w, h in facts["images"]), facts["images"]
    alts = [alt for alt, _, _ in facts["images"]]
    for kind in ("detections", "segmentation masks", "depth map", "input image"):
        assert alts.count(kind) >= GALLERY_SAMPLE - 1, (kind, alts)  # one card may have no boxes
    assert facts["audioBySection"] == {"automatic-speech-recognition": GALLERY_SAMPLE, "audio-classification": GALLERY_SAMPLE}
    assert facts["durations"] and all(d > 0 for d in facts["durations"]), facts["durations"]
    assert facts["marks"]["question-answering"] == GALLERY_SAMPLE  # every answer is marked in its context
    assert facts["marks"]["token-classification"] > 0
    assert len(facts["summaries"]) == GALLERY_SAMPLE and all(s.strip() for s in facts["summaries"])
    assert facts["charts"] >= 2 * 6  # labels and scores of the six labelled tasks, QA scores

    table = pq.read_table(job_output)
    ids = table.column("id").to_pylist()
    for t in TASKS:
        errors = table.column(f"{t['task']}.error").to_pylist()
        want = sorted((i, e) for i, e in zip(ids, errors) if e is not None)
        assert sorted(tuple(r) for r in facts["failed"][f"task-{t['task']}"]) == want
    # the hostile id is shown as its text, and none of its markup became elements
    assert HOSTILE_ID in sum(facts["cards"].values(), []) or any(HOSTILE_ID == r[0] for rows in facts["failed"].values() for r in rows)
    assert facts["rowIdElements"] == 0


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.notes, self.alts, self.cards = [], [], 0
        self._in_note = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self._in_note = tag == "p" and attrs.get("class") == "note"
        if tag == "img":
            self.alts.append(attrs.get("alt"))
        if tag == "article":
            self.cards += 1

    def handle_data(self, data):
        if self._in_note:
            self.notes.append(data)
            self._in_note = False


def test_output_without_its_inputs_says_so(bare_output, tmp_path, capsys):
    """A single-task job that kept no input columns: plain column names, boxes on a blank
    canvas, and a note on every card that the image is not in the output."""
    out = tmp_path / "bare.html"
    assert taskray(["report", bare_output, "--out", str(out), "--sample", "3"]) == 0
    assert str(out) in capsys.readouterr().out
    page = _Collect()
    page.feed(out.read_text())
    assert page.cards == 3
    missing = [n for n in page.notes if "input image is not in the output" in n]
    assert len(missing) == 3
    assert "detections" in page.alts and "input image" not in page.alts
    assert "<tr><td>dtype</td><td>float32</td></tr>" in out.read_text()  # the dtype the rows were computed in


def test_not_a_finished_output_is_refused(tmp_path, capsys):
    (tmp_path / "part-000.parquet").write_bytes(b"")
    assert taskray(["report", str(tmp_path), "--out", str(tmp_path / "r.html")]) == 2
    assert "_SUCCESS" in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()


def test_help_states_the_media_limits(capsys):
    with pytest.raises(SystemExit):
        taskray(["report", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert re.search(r"256-512 px on the long side", text) and "first 30 s" in text


def test_report_reads_an_output_on_s3(bare_output, tmp_path):
    """The output is read through pipelines.storage as the job writes it: here from a real S3
    endpoint (moto's server on 127.0.0.1), configured by the standard AWS variables."""
    import pyarrow.fs as pafs

    from tests.s3_server import s3_endpoint

    with s3_endpoint(bucket="report-test") as s3:
        pafs.copy_files(bare_output, f"{s3.bucket}/labels", source_filesystem=pafs.LocalFileSystem(), destination_filesystem=s3.pyarrow_fs())
        result = write_report(s3.uri("labels"), str(tmp_path / "s3.html"), sample=2)
    assert result.sampled == write_report(bare_output, str(tmp_path / "local.html"), sample=2).sampled
    page = _Collect()
    page.feed((tmp_path / "s3.html").read_text())
    assert page.cards == 2 and "s3://report-test/labels" in (tmp_path / "s3.html").read_text()


CARD_VALUES = """(() => {
  const text = (root, selector) => { const e = root.querySelector(selector); return e ? e.textContent : null; };
  const score = e => e ? {shown: e.textContent, value: parseFloat(e.getAttribute('value'))} : null;
  const items = (root, selector) => Array.from(root.querySelectorAll(selector)).map(
      e => [text(e, '.label'), score(e.querySelector('data.score'))]);
  const cards = Array.from(document.querySelectorAll('article.card')).map(c => ({
    task: c.dataset.task, rowId: c.dataset.rowId,
    label: text(c, 'dl.facts b.label'), score: score(c.querySelector('dl.facts data.score')),
    transcript: text(c, 'p.transcript'), answer: text(c, 'b.answer'), output: text(c, 'p.output'),
    objects: items(c, 'table.list tr:not(:first-child)'), legend: items(c, 'ul.legend li'),
  }));
  const charts = {};
  for (const s of document.querySelectorAll('section.task')) charts[s.id.slice(5)] = {
    bars: Array.from(s.querySelectorAll('svg.chart g.bar')).map(g => [g.dataset.label, parseInt(g.dataset.count)]),
    bins: Array.from(s.querySelectorAll('svg.chart rect.bin')).map(
        r => [parseFloat(r.dataset.low), parseFloat(r.dataset.high), parseInt(r.dataset.count)]),
    summary: Object.fromEntries(Array.from(s.querySelectorAll('table.summary tr')).map(r => [r.cells[0].textContent, r.cells[1].textContent])),
  };
  return {cards, charts};
})()"""

# Where each task's labels and scores are in a row: a plain column, or members of list items.
LABELS = {
    "image-classification": ("label", "score", None), "audio-classification": ("label", "score", None),
    "text-classification": ("label", "score", None), "object-detection": (None, "score", "objects"),
    "image-segmentation": (None, "score", "segments"), "token-classification": (None, "score", "entities"),
    "question-answering": (None, "score", None),
}


def shown(value) -> dict:
    return {"shown": f"{value:.3f}", "value": value}


def expected_chart(rows: list[dict], task: str) -> tuple[dict, list[float]]:
    label_column, score_column, items = LABELS[task]
    labels, scores = {}, []
    for row in rows:
        if items:
            for item in row[f"{task}.{items}"] or []:
                label = item.get("entity_group", item.get("label"))
                labels[label] = labels.get(label, 0) + 1
                if item.get(score_column) is not None:
                    scores.append(item[score_column])
            continue
        if label_column and row[f"{task}.{label_column}"] is not None:
            labels[row[f"{task}.{label_column}"]] = labels.get(row[f"{task}.{label_column}"], 0) + 1
        if row[f"{task}.{score_column}"] is not None:
            scores.append(row[f"{task}.{score_column}"])
    return labels, scores


def test_cards_and_charts_show_the_output_values(report, job_output, browser):
    """Each card's label, score, transcript, answer, summary, objects and segments equal the
    output row it names, each task's row counts equal the output's, and each chart's counts
    equal the counts over every row."""
    browser.open("file://" + report.path)
    page = browser.evaluate(CARD_VALUES)
    table = pq.read_table(job_output).to_pylist()
    rows = {row["id"]: row for row in table}
    checked: dict[str, int] = {}
    for card in page["cards"]:
        task, row = card["task"], rows[card["rowId"]]
        value = lambda column: row[f"{task}.{column}"]  # noqa: E731
        if task in ("image-classification", "audio-classification", "text-classification"):
            assert (card["label"], card["score"]) == (value("label"), shown(value("score"))), card
        elif task == "automatic-speech-recognition":
            assert card["transcript"] == value("text") and card["transcript"].strip()
        elif task == "question-answering":
            assert (card["answer"], card["score"]) == (value("answer"), shown(value("score"))), card
        elif task == "summarization":
            assert card["output"] == value("summary_text") and card["output"].strip()
        elif task == "object-detection":
            objects = sorted(value("objects"), key=lambda o: -o["score"])[:12]
            assert card["objects"] == [[o["label"], shown(o["score"])] for o in objects], card
        elif task == "image-segmentation":
            segments = sorted(value("segments"), key=lambda s: -(s["score"] or 0.0))[:12]
            assert card["legend"] == [[s["label"], shown(s["score"])] for s in segments], card
        else:
            continue
        checked[task] = checked.get(task, 0) + 1
    assert checked == {t: GALLERY_SAMPLE for t in (
        "image-classification", "audio-classification", "text-classification", "automatic-speech-recognition",
        "question-answering", "summarization", "object-detection", "image-segmentation")}

    for t in TASKS:
        failed = sum(row[f"{t['task']}.error"] is not None for row in table)
        summary = page["charts"][t["task"]]["summary"]
        assert (summary["rows"], summary["ok"], summary["failed"]) == (str(len(table)), str(len(table) - failed), str(failed))
    for task in LABELS:
        labels, scores = expected_chart(table, task)
        chart = page["charts"][task]
        assert dict(chart["bars"]) == labels and len(chart["bars"]) == len(labels)
        assert sum(count for _, _, count in chart["bins"]) == len(scores) > 0, task
        last = len(chart["bins"]) - 1
        for i, (low, high, count) in enumerate(chart["bins"]):
            inside = [s for s in scores if low <= s < high or (i == last and s == high)]
            assert count == len(inside), (task, low, high, count, len(inside))
