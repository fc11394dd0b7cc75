"""One module per task; importing this package registers every operator."""

from importlib import import_module

TASK_MODULES = (
    "audio_classification",
    "speech_recognition",
    "image_classification",
    "object_detection",
    "image_segmentation",
    "depth_estimation",
    "text_classification",
    "token_classification",
    "question_answering",
    "feature_extraction",
    "text_generation",
    "summarization",
    "translation",
)

for _name in TASK_MODULES:
    try:
        import_module(f"{__name__}.{_name}")
    except ModuleNotFoundError as e:  # TEMPORARY while task modules are being written
        if e.name != f"{__name__}.{_name}":
            raise
