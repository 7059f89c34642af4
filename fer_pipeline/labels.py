"""FER-2013 class names and the mapping from its `Usage` column to splits."""

EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
NUM_CLASSES = len(EMOTIONS)

SPLITS: tuple[str, ...] = ("train", "val", "test")

# FER-2013 ships three parts. PrivateTest selects the model and PublicTest
# reports it, which keeps the published test split untouched by model choice.
USAGE_TO_SPLIT: dict[str, str] = {
    "Training": "train",
    "PrivateTest": "val",
    "PublicTest": "test",
}

IMAGE_SIZE = 48
PIXELS_PER_IMAGE = IMAGE_SIZE * IMAGE_SIZE
