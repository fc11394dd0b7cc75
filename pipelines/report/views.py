"""One gallery card per sampled row, drawn as people expect to see each task's result.

Every string that comes from the output (ids, input text, labels, answers, errors) is
escaped here: outputs are untrusted, and the page's Content-Security-Policy (page.py) is the
second line of defence, not the first.
"""

from __future__ import annotations

from html import escape
from typing import Any, Callable

from pipelines.report import drawing, media
from pipelines.report.drawing import Palette
from pipelines.job_output import TaskColumns
from pipelines.report.limits import MAX_DRAWN, TEXT_LIMIT

TABLE_ROWS = 12  # objects/entities/segments listed under a drawing


def render_card(task: TaskColumns, row: dict[str, Any], row_id: Any, colours: Palette) -> str:
    render = RENDERERS.get(task.task, _render_generic)
    body = render(task, row, colours)
    return (
        f'<article class="card" data-task="{escape(task.name)}" data-row-id="{escape(str(row_id))}">'
        f'<h4 class="row-id">{escape(str(row_id))}</h4>{body}</article>'
    )


# -- pieces


def note(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>'


def _text(value: Any, limit: int = TEXT_LIMIT) -> str:
    text = "" if value is None else str(value)
    if len(text) > limit:
        return escape(text[:limit]) + f'<span class="note"> … ({len(text) - limit} more characters)</span>'
    return escape(text)


def _score(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "–"


def _shown_score(value: Any) -> str:
    """A score as shown (3 decimals), carrying its exact value (`<data value>`), so that what a
    card shows can be checked against the output row it names."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "–"
    return f'<data class="score" value="{float(value)!r}">{value:.3f}</data>'


def _swatch(label: Any, colours: Palette) -> str:
    return f'<span class="swatch" style="background:{drawing.css_colour(colours(label))}"></span>'


def _input(task: TaskColumns, row: dict[str, Any], role: str) -> tuple[Any, str | None]:
    """The row's input for `role`, or None and a note when the job did not keep it."""
    column = task.inputs.get(role)
    if column is None:
        return None, f"the input {role} is not in the output (the job did not keep its column; see keep_columns)"
    return row.get(column), None


def _result(task: TaskColumns, row: dict[str, Any], column: str) -> Any:
    name = task.results.get(column)
    return None if name is None else row.get(name)


def _img(image, alt: str, caption: str | None = None) -> str:
    tag = f'<img src="{media.image_uri(image)}" width="{image.width}" height="{image.height}" alt="{escape(alt)}">'
    if caption:
        return f"<figure>{tag}<figcaption>{escape(caption)}</figcaption></figure>"
    return f"<figure>{tag}</figure>"


def _facts(pairs: list[tuple[str, str]]) -> str:
    """A definition list; values are HTML already escaped by the caller."""
    return '<dl class="facts">' + "".join(f"<dt>{escape(k)}</dt><dd>{v}</dd>" for k, v in pairs) + "</dl>"


def _top_scores(scores: Any, colours: Palette) -> str:
    if not isinstance(scores, list) or not scores:
        return ""
    items = "".join(
        f"<li>{_swatch(s.get('label'), colours)}<span class=label>{escape(str(s.get('label')))}</span> <span class=num>{_shown_score(s.get('score'))}</span></li>"
        for s in scores[:TABLE_ROWS] if isinstance(s, dict)
    )
    return f'<ol class="scores">{items}</ol>'


def _classified(task: TaskColumns, row: dict[str, Any], colours: Palette) -> str:
    label = _result(task, row, "label")
    return _facts([("label", f'{_swatch(label, colours)}<b class="label">{escape(str(label))}</b>'), ("score", _shown_score(_result(task, row, "score")))]) + _top_scores(
        _result(task, row, "scores"), colours
    )


def highlight(text: str, spans: list[tuple[Any, Any, Any, str]], colours: Palette, limit: int = TEXT_LIMIT) -> tuple[str, int]:
    """`text` as HTML with each (start, end, label, tooltip) span marked in its label's colour.
    Returns the HTML and how many spans could not be marked (overlapping, out of range, or
    past the shown part of the text)."""
    shown = text[:limit]
    out, pos, skipped = [], 0, 0
    for start, end, label, tooltip in sorted(spans, key=lambda s: (s[0] if isinstance(s[0], int) else -1)):
        if not (isinstance(start, int) and isinstance(end, int)) or start < pos or end <= start or end > len(shown):
            skipped += 1
            continue
        colour = drawing.css_colour(colours(label))
        out.append(escape(shown[pos:start]))
        out.append(
            f'<mark style="border-color:{colour};background:{colour}33" title="{escape(tooltip)}">'
            f'{escape(shown[start:end])}<sub style="background:{colour}">{escape(str(label))}</sub></mark>'
        )
        pos = end
    out.append(escape(shown[pos:]))
    if len(text) > limit:
        out.append(f'<span class="note"> … ({len(text) - limit} more characters)</span>')
    return "".join(out), skipped


# -- images


def _source_preview(task: TaskColumns, row: dict[str, Any]):
    """(preview image or None, scale from source pixels, original size or None, notes)."""
    value, missing = _input(task, row, "image")
    if missing:
        return None, 1.0, None, [missing]
    image, why = media.source_image(value)
    if image is None:
        return None, 1.0, None, [why]
    size = image.size
    preview, scale = drawing.fit_preview(image)
    return preview, scale, size, []


def _render_image_classification(task: TaskColumns, row: dict[str, Any], colours: Palette) -> str:
    preview, _, _, notes = _source_preview(task, row)
    figure = _img(preview, "input image") if preview is not None else ""
    return f'<div class="media">{figure}{"".join(map(note, notes))}</div><div class="result">{_classified(task, row, colours)}</div>'


def _render_object_detection(task: TaskColumns, row: dict[str, Any], colours: Palette) -> str:
    objects = [o for o in (_result(task, row, "objects") or []) if isinstance(o, dict)]
    objects.sort(key=lambda o: -(o.get("score") or 0.0))
    notes = []
    drawn = objects[:MAX_DRAWN]
    if len(objects) > MAX_DRAWN:
        notes.append(f"{MAX_DRAWN} of {len(objects)} boxes drawn (highest scores)")
    preview, scale, _, missing = _source_preview(task, row)
    notes += missing
    if preview is None and drawn:
        # Boxes on grey, in the extent they span, so their layout still shows.
        extent = [max(float((o.get("box") or {}).get(k) or 0) for o in drawn) for k in ("xmax", "ymax")]
        preview, scale = drawing.fit_preview(drawing.blank_canvas(int(extent[0]) + 1, int(extent[1]) + 1))
        notes.append("boxes drawn on a blank canvas")
    figure = _img(drawing.draw_boxes(preview, drawn, scale, colours), "detections") if preview is not None else ""
    rows = "".join(
        f"<tr><td>{_swatch(o.get('label'), colours)}<span class=label>{escape(str(o.get('label')))}</span></td><td class=num>{_shown_score(o.get('score'))}</td>"
        f"<td class=num>{escape(_box_text(o.get('box')))}</td></tr>"
        for o in objects[:TABLE_ROWS]
    )
    more = note(f"{len(objects) - TABLE_ROWS} more objects") if len(objects) > TABLE_ROWS else ""
    table = f'<table class="list"><tr><th>label</th><th>score</th><th>box</th></tr>{rows}</table>{more}' if objects else note("no objects detected")
    return f'<div class="media">{figure}{"".join(map(note, notes))}</div><div class="result">{table}</div>'


def _box_text(box: Any) -> str:
    if not isinstance(box, dict):
        return "?"
    return ", ".join(str(box.get(k)) for k in ("xmin", "ymin", "xmax", "ymax"))


def _render_image_segmentation(task: TaskColumns, row: dict[str, Any], colours: Palette) -> str:
    segments = [s for s in (_result(task, row, "segments") or []) if isinstance(s, dict)]
    segments.sort(key=lambda s: -(s.get("score") or 0.0))
    notes = []
    masks = []
    for s in segments[:MAX_DRAWN]:
        mask, why = media.png_image(s.get("mask"), "mask")
        if mask is None:
            notes.append(f"{s.get('label')}: {why}")
        else:
            masks.append((s.get("label"), mask))
    if len(segments) > MAX_DRAWN:
        notes.append(f"{MAX_DRAWN} of {len(segments)} masks drawn (highest scores)")
    preview, _, _, missing = _source_preview(task, row)
    notes += missing
    if preview is None and masks:
        preview, _ = drawing.fit_preview(drawing.blank_canvas(*masks[0][1].size))
        notes.append("masks drawn on a blank canvas")
    figure = _img(drawing.overlay_masks(preview, masks, colours), "segmentation masks") if preview is not None else ""
    legend = "".join(
        f"<li>{_swatch(s.get('label'), colours)}<span class=label>{escape(str(s.get('label')))}</span> <span class=num>{_shown_score(s.get('score'))}</span></li>"
        for s in segments[:TABLE_ROWS]
    )
    result = f'<ul class="legend">{legend}</ul>' if segments else note("no segments")
    return f'<div class="media">{figure}{"".join(map(note, notes))}</div><div class="result">{result}</div>'


def _render_depth_estimation(task: TaskColumns, row: dict[str, Any], colours: Palette) -> str:
    preview, _, _, notes = _source_preview(task, row)
    depth, why = media.png_image(_result(task, row, "depth"), "depth map")
    figures = []
    if preview is not None:
        figures.append(_img(preview, "input image", "input"))
    if depth is None:
        notes.append(why)
    else:
        coloured, _ = drawing.fit_preview(drawing.colour_depth(depth))
        if preview is not None and coloured.size != preview.size:
            coloured = coloured.resize(preview.size)
        figures.append(_img(coloured, "depth map", f"depth {depth.width}x{depth.height}"))
    legend = '<div class="depth-legend"><span>low</span><span class="gradient"></span><span>high</span></div>'
    return f'<div class="media pair">{"".join(figures)}</div>{legend}{"".join(map(note, notes))}'


# -- audio


def _audio_player(task: TaskColumns, row: dict[str, Any]) -> str:
    value, missing = _input(task, row, "audio")
    if missing:
        return note(missing)
    preview = media.audio_preview(value)
    player = f'<audio controls preload="metadata" src="{preview.uri}"></audio>' if preview.uri else ""
    return player + (note(preview.note) if preview.note else "")


def _render_audio_classification(task: TaskColumns, row: dict[str, Any], colours: Palette) -> str:
    return f'<div class="media">{_audio_player(task, row)}</div><div class="result">{_classified(task, row, colours)}</div>'


def _render_speech_recognition(task: TaskColumns, row: dict[str, Any], colours: Palette) -> str:
    transcript = _result(task, row, "text")
    return f'<div class="media">{_audio_player(task, row)}</div><div class="result"><p class="transcript">{_text(transcript)}</p></div>'


# -- text


def _input_text(task: TaskColumns, row: dict[str, Any], role: str = "text") -> tuple[str | None, str]:
    value, missing = _input(task, row, role)
    if missing:
        return None, note(missing)
    return ("" if value is None else str(value)), ""


def _render_text_classification(task: TaskColumns, row: dict[str, Any], colours: Palette) -> str:
    text, missing = _input_text(task, row)
    shown = f'<p class="source">{_text(text)}</p>' if text is not None else missing
    return f"{shown}<div class=\"result\">{_classified(task, row, colours)}</div>"


def _render_token_classification(task: TaskColumns, row: dict[str, Any], colours: Palette) -> str:
    entities = [e for e in (_result(task, row, "entities") or []) if isinstance(e, dict)]
    text, missing = _input_text(task, row)
    parts = []
    if text is not None:
        spans = [
            (e.get("start"), e.get("end"), e.get("entity_group", e.get("entity")), f"{e.get('entity_group', e.get('entity'))} {_score(e.get('score'))}")
            for e in entities
        ]
        marked, skipped = highlight(text, spans, colours)
        parts.append(f'<p class="source entities">{marked}</p>')
        if skipped:
            parts.append(note(f"{skipped} entities not marked (no offsets, overlapping, or past the shown text)"))
    else:
        parts.append(missing)
    listed = "".join(
        f"<li>{_swatch(e.get('entity_group', e.get('entity')), colours)}{escape(str(e.get('entity_group', e.get('entity'))))}: "
        f"{escape(str(e.get('word')))} <span class=num>{_shown_score(e.get('score'))}</span></li>"
        for e in entities[:TABLE_ROWS]
    )
    parts.append(f'<ul class="legend">{listed}</ul>' if entities else note("no entities"))
    return "".join(parts)


def _render_question_answering(task: TaskColumns, row: dict[str, Any], colours: Palette) -> str:
    question, q_missing = _input_text(task, row, "question")
    context, c_missing = _input_text(task, row, "context")
    answer, start, end = _result(task, row, "answer"), _result(task, row, "start"), _result(task, row, "end")
    parts = [f'<p class="question">Q: {_text(question)}</p>' if question is not None else q_missing]
    if context is not None:
        marked, skipped = highlight(context, [(start, end, "answer", f"answer {_score(_result(task, row, 'score'))}")], colours)
        parts.append(f'<p class="source">{marked}</p>')
        if skipped:
            parts.append(note("the answer's offsets do not fall in the shown context"))
    else:
        parts.append(c_missing)
    parts.append(_facts([("answer", f'<b class="answer">{_text(answer)}</b>'), ("score", _shown_score(_result(task, row, "score")))]))
    return "".join(parts)


def _side_by_side(source_name: str, output_column: str) -> Callable[[TaskColumns, dict[str, Any], Palette], str]:
    def render(task: TaskColumns, row: dict[str, Any], colours: Palette) -> str:
        text, missing = _input_text(task, row)
        left = f'<p class="source">{_text(text)}</p>' if text is not None else missing
        right = f'<p class="output">{_text(_result(task, row, output_column))}</p>'
        return (
            f'<div class="pair text"><div><h5>{escape(source_name)}</h5>{left}</div>'
            f"<div><h5>{escape(output_column)}</h5>{right}</div></div>"
        )

    return render


def _render_feature_extraction(task: TaskColumns, row: dict[str, Any], colours: Palette) -> str:
    import math

    text, missing = _input_text(task, row)
    shown = f'<p class="source">{_text(text)}</p>' if text is not None else missing
    vector = _result(task, row, "embedding") or []
    if vector and isinstance(vector[0], list):  # token-level features: one vector per token
        facts = [("embedding", f"{len(vector)} x {len(vector[0])} (per token)")]
    else:
        norm = math.sqrt(sum(float(v) * float(v) for v in vector))
        head = ", ".join(f"{float(v):.3f}" for v in vector[:6])
        facts = [("dimensions", str(len(vector))), ("norm", f"{norm:.4f}"), ("first values", escape(head) + " …")]
    return shown + _facts(facts)


def _render_generic(task: TaskColumns, row: dict[str, Any], colours: Palette) -> str:
    pairs = [(c, _text(repr(row.get(name)), 500)) for c, name in task.results.items() if c != "error"]
    return _facts(pairs)


RENDERERS: dict[str, Callable[[TaskColumns, dict[str, Any], Palette], str]] = {
    "image-classification": _render_image_classification,
    "object-detection": _render_object_detection,
    "image-segmentation": _render_image_segmentation,
    "depth-estimation": _render_depth_estimation,
    "audio-classification": _render_audio_classification,
    "automatic-speech-recognition": _render_speech_recognition,
    "text-classification": _render_text_classification,
    "token-classification": _render_token_classification,
    "question-answering": _render_question_answering,
    "feature-extraction": _render_feature_extraction,
    "text-generation": _side_by_side("prompt", "generated_text"),
    "summarization": _side_by_side("source", "summary_text"),
    "translation": _side_by_side("source", "translation_text"),
}
