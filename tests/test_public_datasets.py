"""The public datasets (issue 27): RAF-DB, AffectNet, CK+, CK+48, JAFFE and ExpW read from small replicas the tests
write in each set's distributed layout (file names, label files and numbering as their authors ship them).

Each checks what a wrong reader would silently get wrong: the label mapping class by class (every image of one
label is one flat grey level, so any crop of it still says which label it was written under), the faces cut where
the set says (given landmarks and boxes, the detector elsewhere), subject-wise folds, bad lines named, and a missing
set's one message. CK+48 is also read from the real copy in ../shared/data when it is there, for evaluation and the
split checks only: it is never trained on.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import compose

from mimic.data.affectnet import AffectNetSource
from mimic.data.base import DataError
from mimic.data.ckplus import CKPlus48Source, CKPlusSource
from mimic.data.datamodule import EmotionDataModule, datamodule_from_config
from mimic.data.expw import ExpWSource
from mimic.data.face_crops import FaceCrops, five_of_68, landmark_face, read_items
from mimic.data.folds import fold_splits, group_splits, subject_folds
from mimic.data.jaffe import JAFFESource
from mimic.data.rafdb import RAFDBSource
from mimic.detectors import load_detector
from mimic.faces import Detection
from mimic.labels import FER2013_CLASSES
from mimic.preprocessing import PreprocessSpec, crop_face, to_model_image

SPEC = PreprocessSpec(framing="eyes")
GREY = {k: 30 + 20 * k for k in range(11)}  # label k's images are this grey: a crop of them too


def grey_of(img: np.ndarray) -> int:
    """The label an image of flat grey was written under."""
    value = float(np.median(img))
    return min(GREY, key=lambda k: abs(GREY[k] - value))


def write(path: Path, img: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)
    return path


def flat(label: int, shape=(120, 120)) -> np.ndarray:
    return np.full(shape, GREY[label], np.uint8)


class BlobDetector:
    """Finds the bright squares (> 200) of a replica's photo: each a face, with five landmarks placed in it."""

    config = {"class": "BlobDetector"}

    def __init__(self) -> None:
        self.calls = 0

    def detect(self, frame: np.ndarray) -> list[Detection]:
        self.calls += 1
        gray = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        _, _, stats, _ = cv2.connectedComponentsWithStats((gray > 200).astype(np.uint8))
        out = []
        for x, y, w, h, _ in stats[1:]:
            marks = ((0.3, 0.4), (0.7, 0.4), (0.5, 0.6), (0.35, 0.8), (0.65, 0.8))
            out.append(Detection((x, y, w, h), 0.9, tuple((x + a * w, y + b * h) for a, b in marks)))
        return out


class NoDetector:
    config = {"class": "NoDetector"}

    def detect(self, frame: np.ndarray) -> list[Detection]:
        raise AssertionError("the detector ran where the set gives the face")


def names(dm: EmotionDataModule, split: str) -> list[str]:
    return [dm.classes[k] for k in dm.data[split]["labels"]]


# ---- RAF-DB ----------------------------------------------------------------------------------------------------
RAF = {1: "surprise", 2: "fear", 3: "disgust", 4: "happy", 5: "sad", 6: "angry", 7: "neutral"}


def rafdb(root: Path, per_label: int = 2, original: bool = False) -> Path:
    lines = []
    for split, digits in (("train", 5), ("test", 4)):
        n = 0
        for label in RAF:
            for _ in range(per_label):
                n += 1
                name = f"{split}_{n:0{digits}d}"
                lines.append(f"{name}.jpg {label}")
                write(root / "basic/Image/aligned" / f"{name}_aligned.jpg", cv2.merge([flat(label, (100, 100))] * 3))
                if original:
                    photo = np.full((240, 320, 3), 90, np.uint8)
                    photo[60:180, 100:220] = GREY[label]
                    write(root / "basic/Image/original" / f"{name}.jpg", photo)
                    marks = [(136, 108), (184, 108), (160, 130), (142, 156), (178, 156)]
                    attri = root / "basic/Annotation/manual" / f"{name}_manu_attri.txt"
                    attri.parent.mkdir(parents=True, exist_ok=True)
                    attri.write_text("".join(f"{x}\t{y}\n" for x, y in marks) + "0\n1\n2\n")
    (root / "basic/EmoLabel").mkdir(parents=True, exist_ok=True)
    (root / "basic/EmoLabel/list_patition_label.txt").write_text("\n".join(lines) + "\n")
    return root


def test_rafdb_labels_map_by_name_and_keep_the_sets_split(tmp_path):
    root = rafdb(tmp_path / "RAF-DB")
    source = RAFDBSource(root / "basic", cache_dir=False)  # basic/ itself is found too
    assert source.images == "aligned"
    dm = EmotionDataModule({"rafdb": source}, FER2013_CLASSES, SPEC, val_fraction=0.5, seed=0)
    dm.setup("fit")
    for split in ("train", "val", "test"):
        for img, name, path in zip(dm.data[split]["images"], names(dm, split), dm.ids(split), strict=True):
            assert name == RAF[grey_of(img)], path
    assert all(Path(p).name.startswith("test_") for p in dm.ids("test"))
    assert not any(Path(p).name.startswith("test_") for p in [*dm.ids("train"), *dm.ids("val")])
    assert len(dm.ids("test")) == 14 and sorted(set(names(dm, "val"))) == sorted(RAF.values())  # stratified


def test_rafdb_original_photos_are_framed_by_their_landmarks(tmp_path):
    root = rafdb(tmp_path / "raf", per_label=1, original=True)
    source = RAFDBSource(root, images="original", preprocess=SPEC, detector=NoDetector(), cache_dir=False)
    splits = source.load()
    photo = cv2.imread(str(root / "basic/Image/original/train_00001.jpg"))
    face = landmark_face([(136, 108), (184, 108), (160, 130), (142, 156), (178, 156)])
    expected = to_model_image(crop_face(photo, face, SPEC), SPEC)
    assert np.array_equal(splits["train"].images[0], expected)
    assert [grey_of(i) for i in splits["train"].images] == list(RAF)  # each photo's own face
    assert splits["train"].labels.tolist() == [k - 1 for k in RAF]


def test_rafdb_bad_line_and_missing_set(tmp_path):
    root = rafdb(tmp_path / "raf", per_label=1)
    labels = root / "basic/EmoLabel/list_patition_label.txt"
    lines = labels.read_text().splitlines()
    lines[2] = "train_00003.jpg 8"
    labels.write_text("\n".join(lines))
    with pytest.raises(DataError, match=r"list_patition_label.txt, line 3: 'train_00003.jpg 8' is not"):
        RAFDBSource(root, cache_dir=False).load()
    with pytest.raises(DataError) as e:
        RAFDBSource(tmp_path / "nowhere")
    message = str(e.value)
    assert "RAF-DB not found" in message and str(tmp_path / "nowhere" / "basic/EmoLabel") in message
    assert "whdeng.cn" in message and "data.path" in message


# ---- AffectNet -------------------------------------------------------------------------------------------------
AFFECT = {0: "neutral", 1: "happy", 2: "sad", 3: "surprise", 4: "fear", 5: "disgust", 6: "angry", 7: "contempt"}
HEADER = "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal"


def ibug68(x: float, y: float, side: float) -> list[float]:
    """68 landmarks of a face in the square at (x, y): the eye rings, nose tip and mouth corners where a face has
    them, the rest on the square's centre."""
    p = np.full((68, 2), (x + side / 2, y + side / 2))
    p[36:42] = (x + 0.3 * side, y + 0.4 * side)
    p[42:48] = (x + 0.7 * side, y + 0.4 * side)
    p[30] = (x + 0.5 * side, y + 0.6 * side)
    p[48], p[54] = (x + 0.35 * side, y + 0.8 * side), (x + 0.65 * side, y + 0.8 * side)
    return p.ravel().round(2).tolist()


def affectnet(root: Path, rows: dict[str, list[str]] | None = None) -> Path:
    files = {"training.csv": [], "validation.csv": []}
    for file, per_label in (("training.csv", 3), ("validation.csv", 1)):
        for label in range(11):
            for i in range(per_label):
                rel = f"{100 + label}/{file[:5]}{label}x{i}.jpg"
                photo = np.full((200, 200, 3), 70, np.uint8)
                photo[40:160, 40:160] = GREY[label]
                photo[:8, 8 * i : 8 * i + 8] = 255  # every file its own bytes
                photo[8:16, 8 * label : 8 * label + 8] = 255
                photo[16:24, :8] = 255 if file == "training.csv" else 0
                write(root / "Manually_Annotated_Images" / rel, photo)
                marks = ";".join(map(str, ibug68(40, 40, 120)))
                files[file].append(f"{rel},40,40,120,120,{marks},{label},0.1,-0.2")
    for file, extra in (rows or {}).items():
        files[file] += extra
    for file, lines in files.items():
        (root / file).write_text(HEADER + "\n" + "\n".join(lines) + "\n")
    return root


def test_affectnet_labels_no_class_rows_and_its_validation_set_as_test(tmp_path, caplog):
    root = affectnet(tmp_path / "affectnet")
    source = AffectNetSource(root, preprocess=SPEC, detector=NoDetector(), cache_dir=False)
    with caplog.at_level(logging.INFO):
        dm = EmotionDataModule({"affectnet": source}, [*FER2013_CLASSES, "contempt"], SPEC, val_fraction=0.34)
        dm.setup("fit")
    for split in ("train", "val", "test"):
        for img, name in zip(dm.data[split]["images"], names(dm, split), strict=True):
            assert name == AFFECT[grey_of(img)]
    assert len(dm.ids("test")) == 8 and all(Path(p).name.startswith("valid") for p in dm.ids("test"))
    assert "training.csv: left out 9 rows of no class (3 none, 3 uncertain, 3 non-face)" in caplog.text
    # contempt only when the run names it: left out, and counted, under FER2013's seven
    caplog.clear()
    with caplog.at_level(logging.INFO):
        seven = EmotionDataModule({"affectnet": source}, FER2013_CLASSES, SPEC)
        seven.setup("test")
    assert "contempt" not in names(seven, "test") and "dropped 1 of 8 images whose class is not in" in caplog.text


def test_affectnet_landmarks_frame_the_face_and_a_box_alone_gets_the_detector(tmp_path):
    photo = np.full((240, 240, 3), 60, np.uint8)
    photo[30:130, 110:210] = 255  # the face the box marks; another bright square elsewhere
    photo[150:230, 10:90] = 255
    write(tmp_path / "a/Manually_Annotated_Images/1/box.png", photo)
    rows = ["1/box.png,110,30,100,100,,3,0,0"]
    root = affectnet(tmp_path / "a", {"validation.csv": rows})
    detector = BlobDetector()
    source = AffectNetSource(root, preprocess=SPEC, detector=detector, cache_dir=False)
    items = source.items("test")
    assert [it.mode for it in items[-2:]] == ["landmarks", "box"]
    test = source.load()["test"]
    assert detector.calls == 1  # the rows with landmarks never ran it
    (face,) = [d for d in BlobDetector().detect(photo) if d.box[0] == 110]
    assert np.array_equal(test.images[-1], to_model_image(crop_face(photo, face, SPEC), SPEC))
    first = cv2.imread(str(root / "Manually_Annotated_Images" / items[0].path.relative_to(source.images)))
    expected = to_model_image(crop_face(first, five_of_68(np.reshape(ibug68(40, 40, 120), (68, 2))), SPEC), SPEC)
    assert np.array_equal(test.images[0], expected)


@pytest.mark.parametrize(
    "row, where",
    [
        ("0/a.jpg,1,2,3,4,,happy,0,0", "line 35"),
        ("0/a.jpg,1,2,3,4,1;2;3,1,0,0", "line 35"),
        ("0/a.jpg,nan,2,3,4,,1,0,0", "line 35"),
        ("0/a.jpg,1,2,3,4," + ";".join(["inf"] * 136) + ",1,0,0", "line 35"),
        ("../../secret.jpg,1,2,3,4,,1,0,0", "not a file inside"),
        ("/etc/passwd,1,2,3,4,,1,0,0", "not a file inside"),
    ],
)
def test_affectnet_bad_rows_are_named(tmp_path, row, where):
    root = affectnet(tmp_path / "a", {"training.csv": [row]})
    with pytest.raises(DataError, match=where) as e:
        AffectNetSource(root, cache_dir=False).items("train")
    assert "training.csv" in str(e.value)


# ---- ExpW ------------------------------------------------------------------------------------------------------
def expw(root: Path, photos: int = 40) -> Path:
    lines = []
    for n in range(photos):
        photo = np.full((160, 320, 3), 50, np.uint8)
        left, right = n % 7, (n + 3) % 7  # two faces a photo, of two labels
        photo[40:120, 20:100] = 255
        photo[40:120, 200:280] = 255
        photo[70:90, 50:70] = GREY[left]  # each face's grey at its centre
        photo[70:90, 230:250] = GREY[right]
        name = f"photo_{n:04d}.jpg"
        write(root / "image/origin" / name, photo)
        lines.append(f"{name} 0 40 20 100 120 0.98 {left}")
        lines.append(f"{name} 1 40 200 280 120 0.95 {right}")
    (root / "label").mkdir(parents=True, exist_ok=True)
    (root / "label/label.lst").write_text("\n".join(lines) + "\n")
    return root


def test_expw_given_boxes_split_by_photo(tmp_path):
    root = expw(tmp_path / "ExpW")
    detector = BlobDetector()
    source = ExpWSource(root, preprocess=SPEC, detector=detector, cache_dir=False)
    splits = source.load()
    order = list(FER2013_CLASSES)
    for split in splits.values():
        for img, label in zip(split.images, split.labels, strict=True):
            centre = img[20:28, 20:28]  # the middle of the framed face: its own grey, not the other face's
            assert grey_of(centre) == label, order[label]
    photos = {s: {Path(p).name for p in d.paths} for s, d in splits.items()}
    assert not photos["train"] & photos["test"] and not photos["train"] & photos["val"]
    assert sum(len(d) for d in splits.values()) == 80 and 0.6 < len(splits["train"]) / 80 < 0.95
    again = ExpWSource(root, preprocess=SPEC, detector=detector, cache_dir=False).load()
    assert all(s.paths == again[k].paths for k, s in splits.items())  # the split is the same every run


def test_expw_box_framing_where_the_detector_finds_none(tmp_path):
    root = expw(tmp_path / "ExpW", photos=1)
    (root / "label/label.lst").write_text("photo_0000.jpg 0 40 20 100 120 0.9 3\n")

    class Nothing:
        config = {"class": "Nothing"}

        def detect(self, frame):
            return []

    test = ExpWSource(root, preprocess=SPEC, detector=Nothing(), cache_dir=False, fractions=[1, 0, 0]).load()
    photo = cv2.imread(str(root / "image/origin/photo_0000.jpg"))
    assert np.array_equal(test["train"].images[0], to_model_image(crop_face(photo, (20, 40, 80, 80), SPEC), SPEC))


@pytest.mark.parametrize(
    "line, why",
    [("photo_0001.jpg 2 40 100 20 120 0.9 3", "right > left"), ("photo_0001.jpg 2 nan 100 20 120 0.9 3", "label 0-6")],
)
def test_expw_bad_line_is_named(tmp_path, line, why):
    root = expw(tmp_path / "ExpW", photos=2)
    with (root / "label/label.lst").open("a") as f:
        f.write(line + "\n")
    with pytest.raises(DataError, match=rf"label.lst, line 5: .*{why}"):
        ExpWSource(root, cache_dir=False).items()


# ---- CK+ and CK+48 ---------------------------------------------------------------------------------------------
CK = {1: "angry", 2: "contempt", 3: "disgust", 4: "fear", 5: "happy", 6: "sad", 7: "surprise"}


def ckplus(root: Path, subjects: int = 12, landmarks: bool = False) -> Path:
    for s in range(subjects):
        subject = f"S{5 + s * 5:03d}"
        for q in range(1, 4):
            sequence, label = f"{q:03d}", 1 + (s + q) % 7
            for f in range(1, 7):
                frame = np.full((120, 160), 40, np.uint8)
                frame[20:100, 40:120] = 255
                frame[50:70, 70:90] = GREY[0] if f == 1 else GREY[label]  # a neutral first frame
                name = f"{subject}_{sequence}_{f:08d}"
                write(root / "cohn-kanade-images" / subject / sequence / f"{name}.png", frame)
                if landmarks:
                    marks = np.reshape(ibug68(40, 20, 80), (68, 2))
                    path = root / "Landmarks" / subject / sequence / f"{name}_landmarks.txt"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text("".join(f"   {x:.7e}   {y:.7e}\n" for x, y in marks))
            if q < 3:  # the third sequence is unlabelled, as many are
                emotion = root / "Emotion" / subject / sequence / f"{subject}_{sequence}_00000006_emotion.txt"
                emotion.parent.mkdir(parents=True, exist_ok=True)
                emotion.write_text(f"   {float(label):.7e}\n")
    return root


@pytest.mark.parametrize("landmarks", [False, True])
def test_ckplus_peak_frames_labels_and_subject_folds(tmp_path, landmarks):
    root = ckplus(tmp_path / "CK+", landmarks=landmarks)
    detector = NoDetector() if landmarks else BlobDetector()
    kw = {"preprocess": SPEC, "detector": detector, "cache_dir": False}
    source = CKPlusSource(root, first_frame_neutral=True, **kw)
    items = source.items()
    assert len(items) == 12 * 2 * 4  # three peak frames and the first of each labelled sequence
    assert {it.mode for it in items} == {"landmarks" if landmarks else "detect"}
    dm = EmotionDataModule({"ckplus": source}, [*FER2013_CLASSES, "contempt"], SPEC)
    dm.setup("fit")
    seen = {}
    for split in ("train", "val", "test"):
        for img, name, path in zip(dm.data[split]["images"], names(dm, split), dm.ids(split), strict=True):
            grey = grey_of(img[20:28, 20:28])
            assert name == ("neutral" if grey == 0 else CK[grey]), path
            seen.setdefault(Path(path).name[:4], set()).add(split)
    assert all(len(splits) == 1 for splits in seen.values())  # no subject on two sides
    assert len(seen) == 12 and len(dm.ids("test")) in (8, 16)  # twelve subjects in ten folds: one or two a fold
    tests = set()
    for fold in range(10):
        splits = CKPlusSource(root, fold=fold, **kw).load()
        tests |= {Path(p).name[:4] for p in splits["test"].paths}
    assert len(tests) == 12  # every subject is tested in some fold


def test_ckplus_bad_label_file_and_missing_set(tmp_path):
    root = ckplus(tmp_path / "CK+", subjects=3)
    bad = root / "Emotion/S010/001/S010_001_00000006_emotion.txt"
    bad.write_text("   9.0000000e+00\n")
    with pytest.raises(DataError, match=r"S010_001_00000006_emotion.txt, line 1: '9.0000000e\+00' is not a CK\+"):
        CKPlusSource(root, cache_dir=False).items()
    with pytest.raises(DataError, match=r"CK\+ not found: looked for .*cohn-kanade-images.*jeffcohn"):
        CKPlusSource(tmp_path)


def ckplus48(root: Path, subjects: int = 10) -> Path:
    for s in range(subjects):
        for i, folder in enumerate(["anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise"]):
            for frame in range(3):
                name = f"S{10 + s:03d}_{i + 1:03d}_{frame + 15:08d}.png"
                img = flat(i, (48, 48))
                img[0, frame] = s  # every file its own bytes
                write(root / folder / name, img)
    return root


def test_ckplus48_evaluates_a_model_with_classes_it_lacks(tmp_path, tiny_checkpoint):
    from mimic.evaluate import run as evaluate  # the evaluation stack, for this test only

    root = ckplus48(tmp_path / "CK+48")
    report = evaluate(compose("evaluate", [f"ckpt={tiny_checkpoint}", "data=ckplus48", f"data.path={root}"], tmp_path))
    assert report["n"] == 6 * 3 and report["split"] == "test"  # one subject's six classes, contempt left out
    assert report["test/recall_neutral"] is None and report["test/recall_happy"] is not None


def test_ckplus48_folds_are_subject_wise(tmp_path):
    root = ckplus48(tmp_path / "CK+48")
    source = CKPlus48Source(root, fold=3)
    assert source.class_names == ("angry", "contempt", "disgust", "fear", "happy", "sad", "surprise")
    splits = source.load()
    subjects = {s: {Path(p).name[:4] for p in d.paths} for s, d in splits.items()}
    assert [len(subjects[s]) for s in ("train", "val", "test")] == [8, 1, 1]
    assert not (subjects["train"] & subjects["test"]) and not (subjects["val"] & subjects["test"])
    for d in splits.values():  # each folder's class
        assert [grey_of(img) for img in d.images] == d.labels.tolist()
    write(root / "anger" / "stray.png", flat(0, (48, 48)))
    with pytest.raises(DataError, match=r"stray.png: a CK\+48 file name starts with its subject"):
        CKPlus48Source(root).load()


@pytest.mark.slow  # the bundled model on all 981 faces
def test_ckplus48_real_copy_splits_and_evaluates_as_the_folder(shared_data, tmp_path):
    """The real CK+48: subject-wise folds, and the bundled model on every face as data=folder reads them."""
    root = shared_data / "ckplus48"
    counts = {d.name: len(list(d.glob("*.png"))) for d in root.iterdir() if d.is_dir()}
    cfg = compose("evaluate", ["data=ckplus48", f"data.path={root}", "data.fold=4"], output_dir=tmp_path)
    dm = datamodule_from_config(cfg.data)
    dm.setup("fit")
    subjects = {s: {Path(p).name[:4] for p in dm.ids(s)} for s in ("train", "val", "test")}
    assert not subjects["train"] & subjects["test"] and not subjects["val"] & subjects["test"]
    assert not subjects["train"] & subjects["val"] and len(set.union(*subjects.values())) >= 100
    total = sum(len(dm.ids(s)) for s in ("train", "val", "test"))
    assert total == sum(counts.values()) - counts["contempt"] == 927  # contempt left out under six classes
    from mimic.evaluate import run as evaluate  # the evaluation stack, for this test only

    every = evaluate(compose("evaluate", ["data=ckplus48", f"data.path={root}", "split=all"], tmp_path / "all"))
    folder = evaluate(compose("evaluate", ["data=folder", f"data.path={root}"], tmp_path / "folder"))
    assert every["n"] == folder["n"] == 927 and every["split"] == "all"
    assert every["test/acc"] == folder["test/acc"] and every["test/recall_neutral"] is None


# ---- JAFFE -----------------------------------------------------------------------------------------------------
JAFFE = {"AN": "angry", "DI": "disgust", "FE": "fear", "HA": "happy", "SA": "sad", "SU": "surprise", "NE": "neutral"}
SUBJECTS = ["KA", "KL", "KM", "KR", "MK", "NA", "NM", "TM", "UY", "YM"]


def jaffe(root: Path) -> Path:
    n = 0
    for subject in SUBJECTS:
        for k, code in enumerate(JAFFE):
            n += 1
            img = np.full((256, 256), 30, np.uint8)
            img[60:200, 60:200] = 255
            img[100:160, 100:160] = GREY[k]
            write(root / f"{subject}.{code}{1 + n % 3}.{n}.tiff", img)
    (root / "README_FIRST.txt").write_text("The JAFFE images may be used only for non-commercial research.\n")
    return root


def test_jaffe_codes_by_name_one_subject_a_fold(tmp_path):
    root = jaffe(tmp_path / "jaffe")
    source = JAFFESource(root, fold=2, preprocess=SPEC, detector=BlobDetector(), cache_dir=False)
    dm = EmotionDataModule({"jaffe": source}, FER2013_CLASSES, SPEC)
    dm.setup("fit")
    codes = list(JAFFE)
    for split in ("train", "val", "test"):
        for img, name in zip(dm.data[split]["images"], names(dm, split), strict=True):
            assert name == JAFFE[codes[grey_of(img[20:28, 20:28])]]
    subjects = {s: {Path(p).name[:2] for p in dm.ids(s)} for s in ("train", "val", "test")}
    assert [len(subjects[s]) for s in ("train", "val", "test")] == [8, 1, 1]
    write(root / "KA.XX1.99.tiff", flat(0))
    with pytest.raises(DataError, match=r"KA.XX1.99.tiff: not a JAFFE name"):
        JAFFESource(root, cache_dir=False).items()


# ---- folds, the face cache, the balanced sampler, the commands ------------------------------------------------
def test_folds_deal_subjects_evenly_and_refuse_impossible_settings():
    subjects = [f"S{i:03d}" for i in range(23) for _ in range(4)]
    folds = subject_folds(subjects, 10, seed=0)
    sizes = np.bincount(list(folds.values()), minlength=10)
    assert sizes.min() == 2 and sizes.max() == 3
    assert subject_folds(subjects, 10, seed=1) != folds
    splits = fold_splits(subjects, 10, 9, 0, "x")
    assert {folds[subjects[i]] for i in splits["val"]} == {0} and {folds[subjects[i]] for i in splits["test"]} == {9}
    with pytest.raises(DataError, match=r"data.folds=30: give a whole number from 3 .* to 23"):
        fold_splits(subjects, 30, 0, 0, "x")
    with pytest.raises(DataError, match=r"data.fold=10: the test fold is a whole number from 0 to 9"):
        fold_splits(subjects, 10, 10, 0, "x")
    groups = [f"img{i}" for i in range(2000)]
    parts = group_splits(groups, [0.8, 0.1, 0.1], seed=0)
    assert abs(len(parts["train"]) - 1600) < 80 and sum(map(len, parts.values())) == 2000


def test_large_sets_read_each_face_once_through_the_cache(tmp_path):
    root = affectnet(tmp_path / "a")
    cache = tmp_path / "cache"
    first = AffectNetSource(root, preprocess=SPEC, detector=NoDetector(), cache_dir=cache).load()
    assert len(list(cache.rglob("*.png"))) == 24 + 8  # every face with landmarks: cropped once, at the model's size
    assert {img.shape for img in first["train"].images} == {(48, 48, 1)}

    def no_decoding(data):
        raise AssertionError("decoded again")

    import mimic.data.face_crops as face_crops  # the module's own name for the decoder, patched below

    original = face_crops.read_image
    face_crops.read_image = no_decoding
    try:
        again = AffectNetSource(root, preprocess=SPEC, detector=NoDetector(), cache_dir=cache).load()
    finally:
        face_crops.read_image = original
    assert all(np.array_equal(a, b) for a, b in zip(first["train"].images, again["train"].images, strict=True))


def test_balance_classes_draws_every_class_equally(tmp_path):
    root = affectnet(tmp_path / "a")
    source = AffectNetSource(root, preprocess=SPEC, cache_dir=False)
    skewed = {"train": source.load()["train"]}
    keep = np.concatenate([np.flatnonzero(skewed["train"].labels == k)[: 1 + 2 * (k == 1)] for k in range(8)])
    skewed["train"] = skewed["train"].subset(keep)  # happy three times, the rest once

    class Fixed:
        name, class_names = "affectnet", source.class_names

        def load(self):
            return dict(skewed)

    dm = EmotionDataModule({"a": Fixed()}, [*FER2013_CLASSES, "contempt"], SPEC, balance_classes=True, val_fraction=0)
    dm.setup("fit")
    sampler = dm.train_dataloader().sampler
    drawn = np.concatenate([dm.data["train"]["labels"][list(sampler)] for _ in range(400)])
    share = np.bincount(drawn, minlength=8) / len(drawn)
    assert np.allclose(share, 1 / 8, atol=0.02)
    with pytest.raises(DataError, match="data.balance_classes='yes'"):
        EmotionDataModule({"a": Fixed()}, FER2013_CLASSES, SPEC, balance_classes="yes")


def test_train_and_evaluate_commands_on_rafdb(tmp_path, tiny_checkpoint):
    from mimic.evaluate import run as evaluate  # the training and evaluation stack, for this test only
    from mimic.train import run as train

    root = rafdb(tmp_path / "raf", per_label=3)
    data = ["data=rafdb", f"data.path={root}", "data.sources.rafdb.cache_dir=false", "data.batch_size=8"]
    cfg = compose("train", [*data, "model.net.widths=[8,16,32]", "debug=fdr"], tmp_path / "t")
    results = train(cfg)
    assert results is not None
    report = evaluate(compose("evaluate", [f"ckpt={tiny_checkpoint}", *data], output_dir=tmp_path / "e"))
    assert report["n"] == 21
    with (tmp_path / "e" / "predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {r["image"].split("/")[-1][:5] for r in rows} == {"test_"}
    assert all(r["label"] == RAF[grey_of(cv2.imread(r["image"], 0))] for r in rows)


def test_every_reader_names_where_it_looked(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (AffectNetSource, "mohammadmahoor.com", "training.csv"),
        (ExpWSource, "mmlab.ie.cuhk.edu.hk", "label.lst"),
        (JAFFESource, "zenodo.org", "tiff"),
        (CKPlus48Source, "jeffcohn", "anger"),
    ]
    for reader, url, looked in cases:
        with pytest.raises(DataError) as e:
            reader(empty / "set" if reader is CKPlus48Source else empty)
        assert url in str(e.value) and looked in str(e.value) and "data.path" in str(e.value)


def test_face_crops_key_the_cache_by_what_the_set_gives(tmp_path):
    crops = FaceCrops(SPEC, BlobDetector(), tmp_path / "c", to_spec=True)
    photo = write(tmp_path / "p.png", np.pad(np.full((80, 80), 255, np.uint8), 40, constant_values=60))
    a, _ = crops.read(photo, "landmarks", landmark_face([(50, 60), (90, 60), (70, 80), (55, 100), (85, 100)]))
    b, _ = crops.read(photo, "landmarks", landmark_face([(60, 60), (80, 60), (70, 70), (62, 80), (78, 80)]))
    assert not np.array_equal(a, b)  # other landmarks, another crop: not the first one's cache entry
    c, _ = crops.read(photo, "landmarks", landmark_face([(90, 60), (50, 60), (70, 80), (85, 100), (55, 100)]))
    assert np.array_equal(a, c)  # the eyes listed the other way round: the same face


def test_sets_merge_in_the_one_datamodule(tmp_path):
    """RAF-DB and JAFFE in one run: each image keeps its own set's label by name, and its source."""
    raf = RAFDBSource(rafdb(tmp_path / "raf"), cache_dir=False)
    jaf = JAFFESource(jaffe(tmp_path / "jaffe"), preprocess=SPEC, detector=BlobDetector(), cache_dir=False)
    dm = EmotionDataModule({"rafdb": raf, "jaffe": jaf}, FER2013_CLASSES, SPEC, source_weights={"rafdb": 1, "jaffe": 1})
    dm.setup("fit")
    train = dm.data["train"]
    assert set(train["sources"].tolist()) == {0, 1}
    codes = list(JAFFE)
    for img, name, k in zip(train["images"], names(dm, "train"), train["sources"], strict=True):
        assert name == (RAF[grey_of(img)] if k == 0 else JAFFE[codes[grey_of(img[20:28, 20:28])]])
    drawn = train["sources"][list(dm.train_dataloader().sampler)]
    assert 0.3 < drawn.mean() < 0.7  # the weights decide the draw, not the sizes (7 and 56 training faces)


def test_real_faces_through_yunet_in_a_jaffe_folder_and_expw_boxes(shared_data, tmp_path):
    """The real detector (YuNet, the configs' default) on real photos: JAFFE's whole images, ExpW's given boxes."""
    faces = shared_data / "faces"
    root = tmp_path / "jaffe"
    for i, (name, code) in enumerate([("obama", "HA"), ("biden", "NE")]):
        write(root / f"K{'AB'[i]}.{code}1.{i}.tiff", cv2.imread(str(faces / f"{name}.jpg")))
    write(root / "KC.SU1.9.tiff", np.full((300, 300), 128, np.uint8))  # no face: skipped and named
    source = JAFFESource(root, folds=3, cache_dir=False)
    got, kept = read_items(source.faces, source.items(), "jaffe")
    assert [it.path.name for it in kept] == ["KA.HA1.0.tiff", "KB.NE1.1.tiff"] and {g.shape for g in got} == {
        (48, 48, 1)
    }

    photo = cv2.imread(str(faces / "two_people.jpg"))
    found = sorted(load_detector("yunet").detect(photo), key=lambda d: d.box[0])
    assert len(found) == 2
    lines = [f"two.jpg {k} {y} {x} {x + w} {y + h} 0.9 {3 + k}" for k, (x, y, w, h) in enumerate(d.box for d in found)]
    write(tmp_path / "expw/image/origin/two.jpg", photo)
    (tmp_path / "expw/label").mkdir(parents=True)
    (tmp_path / "expw/label/label.lst").write_text("\n".join(lines) + "\n")
    train = ExpWSource(tmp_path / "expw", preprocess=SPEC, cache_dir=False, fractions=[1, 0, 0]).load()["train"]
    # each box's own face, framed by its landmarks: YuNet run inside the box places them within a pixel or two of
    # where it places them in the whole photo, far from the other face and from the box's own framing
    for crop, d in zip(train.images, found, strict=True):
        own = to_model_image(crop_face(photo, d, SPEC), SPEC).astype(float)
        other = to_model_image(crop_face(photo, found[1 - found.index(d)], SPEC), SPEC).astype(float)
        by_box = to_model_image(crop_face(photo, d.box, SPEC), SPEC).astype(float)
        near, far = np.abs(crop - own).mean(), min(np.abs(crop - other).mean(), np.abs(crop - by_box).mean())
        assert near < 12 and near < far / 2, (near, far)
