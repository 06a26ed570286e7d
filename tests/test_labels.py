"""Class sets are names: canonical names, validation, and remapping a source's labels by name."""

import numpy as np
import pytest

from mimic.labels import FER2013_CLASSES, UnknownClassError, canonical, check_class_name, remap, validate_classes


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


@pytest.mark.parametrize("name", ["happy", "Happy", "very happy", "half-smile", "class_7", "x" * 32])
def test_a_class_name_is_a_letter_then_letters_digits_and_a_few_marks(name):
    assert check_class_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "7up", "_x", " happy", "x" * 33, "${oc.env:HOME}", "a/b", "a\\b", "..", "happy.", "Ünï", "tab\tx", 7, None],
)
def test_anything_else_is_not_a_class_name(name):
    with pytest.raises(UnknownClassError, match="is not a class name; a class name is an ASCII letter first"):
        check_class_name(name, "data.classes[0]")


def test_a_run_needs_two_classes():
    with pytest.raises(UnknownClassError, match=r"\['happy'\] holds 1 class name\(s\); give at least 2"):
        validate_classes(["happy"], at_least=2)
    assert validate_classes(["happy"]) == ["happy"]  # a source (a folder of one class) may hold one
