"""One module per task; importing this package registers every operator."""

from operators.tasks import (  # noqa: F401  (imported for their @register_operator / @register_variant side effect)
    audio_classification,
    depth_estimation,
    feature_extraction,
    image_classification,
    image_segmentation,
    object_detection,
    question_answering,
    seq2seq_recognition,
    spectrogram_classification,
    speech_recognition,
    summarization,
    text_classification,
    text_generation,
    token_classification,
    translation,
    whisper_recognition,
)
