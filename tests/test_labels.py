"""Class sets are names: canonical names, validation, and remapping a source's labels by name."""

import numpy as np
import pytest

from mimic.labels import FER2013_CLASSES, UnknownClassError, canonical, remap, validate_classes


def test_fer2013_order_is_the_published_one():
    assert FER2013_CLASSES == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def test_canonical_maps_synonyms():
    assert [canonical(n) for n in ["Happiness", " ANGER", "sadness", "Neutral"]] == ["happy", "angry", "sad", "neutral"]


def test_remap_by_name_drops_what_the_target_lacks():
    labels = np.array([0, 3, 4, 6, 5, 3])
    out = remap(labels, FER2013_CLASSES, ["happy", "sad", "neutral"])
    assert out.tolist() == [-1, 0, 1, 2, -1, 0]


def test_unknown_class_lists_known_ones():
    with pytest.raises(UnknownClassError, match="unknown class name.*'smug'.*Known classes: angry, disgust"):
        validate_classes(["happy", "smug"], known=FER2013_CLASSES)


def test_duplicate_classes_rejected():
    with pytest.raises(UnknownClassError, match="more than once"):
        validate_classes(["happy", "Happiness"])
