"""How much of each sampled row the page embeds. One place for the numbers that the media and
drawing code apply and that `taskray report --help` and the page's footer state; importing
it costs nothing (the CLI help reads it), so it imports nothing of operators."""

from __future__ import annotations

# Previews are scaled to this many pixels on the long side: small inputs up (so that box labels
# and mask edges stay legible), large ones down (so the page stays a few MB).
PREVIEW_MIN_SIDE = 256
PREVIEW_MAX_SIDE = 512
AUDIO_PREVIEW_SECONDS = 30.0
AUDIO_MAX_SOURCE_SECONDS = 3600.0
# Opus takes 8, 12, 16, 24 or 48 kHz; 16 kHz is what speech models hear, at ~2 KB/s.
AUDIO_PREVIEW_RATE = 16_000
TEXT_LIMIT = 4000  # characters of an input or output text shown per row
MAX_DRAWN = 100  # boxes or masks drawn per image, highest scores first


def describe() -> str:
    return (
        f"Media is embedded as data URIs: images scaled to {PREVIEW_MIN_SIDE}-{PREVIEW_MAX_SIDE} px on the long side "
        "(JPEG, or PNG for flat drawings) with boxes, masks and depth colours drawn on them; audio as its first "
        f"{AUDIO_PREVIEW_SECONDS:.0f} s (mono Opus, {AUDIO_PREVIEW_RATE // 1000} kHz). Images over the operators' "
        f"pixel limit, audio over {AUDIO_MAX_SOURCE_SECONDS / 60:.0f} min and media that does not decode are left "
        f"out with a note; texts are cut at {TEXT_LIMIT} characters, drawings at {MAX_DRAWN} "
        "boxes or masks. Input media appears only when the job kept its column (keep_columns)."
    )
