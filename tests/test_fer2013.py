"""FER2013 source: every file form and the folder layout, the cache, the error messages, FER+ labels, real samples."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest

import mimic.data.fer2013 as fer
from mimic.data.base import DataError
from mimic.data.fer2013 import FER2013Source
from mimic.data.fer2013_files import read_csv
from mimic.labels import FER2013_CLASSES, FERPLUS_CLASSES

USAGES = ("Training", "PublicTest", "PrivateTest")
SPLIT_OF = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}


def make_rows(n: int = 30, seed: int = 0) -> list[tuple[int, np.ndarray, str]]:
    """n rows (emotion, 48x48 pixels, Usage) cycling through all usages and labels."""
    rng = np.random.default_rng(seed)
    return [(i % 7, rng.integers(0, 256, (48, 48), dtype=np.uint8), USAGES[i % 3]) for i in range(n)]


def csv_text(rows: list[tuple[int, np.ndarray, str]]) -> str:
    body = "".join(f"{e},{' '.join(map(str, px.ravel().tolist()))},{u}\n" for e, px, u in rows)
    return "emotion,pixels,Usage\n" + body


def write(path: Path, rows: list, form: str = "csv") -> Path:
    data = csv_text(rows).encode()
    if form == "csv":
        path.write_bytes(data)
    elif form == "csv.gz":
        path.write_bytes(gzip.compress(data))
    else:
        with tarfile.open(path, "w:gz") as tf:
            for name, content in (("fer2013/README", b"readme"), ("fer2013/fer2013.csv", data)):
                info = tarfile.TarInfo(name)
                info.size = len(content)
                tf.addfile(info, io.BytesIO(content))
    return path


def check_splits(splits: dict, rows: list) -> None:
    assert set(splits) == {"train", "val", "test"}
    for split, data in splits.items():
        want = [(e, px) for e, px, u in rows if SPLIT_OF[u] == split]
        assert isinstance(data.images, np.ndarray) and data.images.dtype == np.uint8
        assert data.images.shape == (len(want), 48, 48)
        assert data.labels.tolist() == [e for e, _ in want]
        assert np.array_equal(data.images, np.stack([px for _, px in want]))


@pytest.mark.parametrize("form", ["csv", "csv.gz", "tar.gz"])
@pytest.mark.parametrize("give", ["file", "dir"])
def test_loads_every_file_form(tmp_path: Path, form: str, give: str) -> None:
    rows = make_rows()
    f = write(tmp_path / f"fer2013.{form}", rows, form)
    splits = FER2013Source(f if give == "file" else tmp_path, cache_dir=tmp_path / "cache").load()
    check_splits(splits, rows)
    assert splits["val"].paths[0].endswith(":3")  # row 2 of the data is line 3 of the file
    assert FER2013Source(f).class_names == FER2013_CLASSES


def test_tolerates_crlf_quotes_blank_lines_and_column_order(tmp_path: Path) -> None:
    rows = make_rows(9)
    body = "".join(f'{e},{u},"{" ".join(map(str, px.ravel().tolist()))}"\r\n' for e, px, u in rows)
    f = tmp_path / "fer2013.csv"
    f.write_text("emotion, Usage, pixels\r\n" + body + "\r\n\r\n", newline="")
    check_splits(read_csv_splits(f), rows)


def read_csv_splits(f: Path) -> dict:
    return FER2013Source(f, cache_dir=f.parent / "cache").load()


def write_folders(root: Path, classes=("angry", "Happy", "neutral"), per_class: int = 2) -> dict:
    """Kaggle layout with jpg and png files; one image is 60x50 BGR to be converted and resized."""
    want = {}
    for split in ("train", "test"):
        for c in classes:
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(per_class):
                img = np.full((48, 48), 40 * i + 20, np.uint8)
                if i == 1 and c == "angry":
                    img = np.full((50, 60, 3), 200, np.uint8)
                cv2.imwrite(str(d / f"img{i}.{'png' if i % 2 else 'jpg'}"), img)
                want.setdefault(split, []).append(c.lower())
        (root / split / "notes.txt").write_text("not an image")
    return want


def test_folder_layout(tmp_path: Path) -> None:
    want = write_folders(tmp_path / "fer")
    splits = FER2013Source(tmp_path / "fer", cache_dir=tmp_path / "cache").load()
    assert set(splits) == {"train", "test"}
    for split, labels in want.items():
        data = splits[split]
        assert data.images.shape == (len(labels), 48, 48) and data.images.dtype == np.uint8
        assert sorted(FER2013_CLASSES[i] for i in data.labels) == sorted(labels)
        assert all(Path(p).is_file() for p in data.paths)
    angry = splits["train"].labels == FER2013_CLASSES.index("angry")
    assert abs(int(splits["train"].images[angry][1].mean()) - 200) <= 2  # BGR 60x50 -> gray 48x48


def test_folder_unknown_class_lists_known_ones(tmp_path: Path) -> None:
    write_folders(tmp_path, classes=("angry", "bored"))
    with pytest.raises(DataError, match="bored") as err:
        FER2013Source(tmp_path, cache_dir=tmp_path / "cache").load()
    assert all(c in str(err.value) for c in FER2013_CLASSES)


def test_cache_is_used_and_rebuilt_when_the_file_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    f = write(tmp_path / "fer2013.csv", make_rows(12))
    FER2013Source(f, cache_dir=cache).load()
    assert len(list(cache.glob("*.npz"))) == 1

    def no_parse(path):
        raise AssertionError("parsed again although the cache is valid")

    with monkeypatch.context() as m:
        m.setattr(fer, "read_csv", no_parse)
        check_splits(FER2013Source(f, cache_dir=cache).load(), make_rows(12))

    rows = make_rows(15, seed=1)
    write(f, rows)
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))
    check_splits(FER2013Source(f, cache_dir=cache).load(), rows)
    assert len(list(cache.glob("*.npz"))) == 1  # the stale cache file is gone

    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))  # a touch alone also rebuilds
    calls = []
    monkeypatch.setattr(fer, "read_csv", lambda path: calls.append(path) or read_csv(path))
    FER2013Source(f, cache_dir=cache).load()
    assert calls == [f]


def test_corrupt_cache_is_rebuilt(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    rows = make_rows(6)
    f = write(tmp_path / "fer2013.csv", rows)
    FER2013Source(f, cache_dir=cache).load()
    (cached,) = cache.glob("*.npz")
    cached.write_bytes(cached.read_bytes()[:100])
    check_splits(FER2013Source(f, cache_dir=cache).load(), rows)
    check_splits(FER2013Source(f, cache_dir=cache).load(), rows)


def test_cache_dir_defaults_to_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIMIC_CACHE_DIR", str(tmp_path / "c"))
    f = write(tmp_path / "fer2013.csv", make_rows(3))
    FER2013Source(f).load()
    assert list((tmp_path / "c" / "fer2013").glob("*.npz"))


def test_folder_cache_sees_new_images(tmp_path: Path) -> None:
    write_folders(tmp_path / "fer")
    src = FER2013Source(tmp_path / "fer", cache_dir=tmp_path / "cache")
    n = len(src.load()["train"])
    cv2.imwrite(str(tmp_path / "fer" / "train" / "neutral" / "new.png"), np.zeros((48, 48), np.uint8))
    assert len(src.load()["train"]) == n + 1


def test_missing_dataset_says_where_it_looked_and_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        FER2013Source(tmp_path / "data" / "fer2013.csv", cache_dir=tmp_path).load()
    msg = str(err.value)
    for needle in ("fer2013.csv.gz", "fer2013.tar.gz", "train/<class>", "data.path=", "msambare/fer2013"):
        assert needle in msg
    assert "challenges-in-representation-learning-facial-expression-recognition-challenge" in msg
    assert str(tmp_path / "data" / "fer2013.csv") in msg


def good_line(emotion: str = "0", usage: str = "Training", pixels: list[str] | None = None) -> str:
    return f"{emotion},{' '.join(pixels or ['7'] * 2304)},{usage}\n"


@pytest.mark.parametrize(
    "bad, reason",
    [
        (good_line(pixels=["7"] * 2303), "2303 pixel values, expected 2304"),
        (good_line(pixels=["7"] * 2305), "2305 pixel values"),
        (good_line(pixels=["7"] * 100 + ["256"] + ["7"] * 2203), "pixel 101 is 256, out of range 0..255"),
        (good_line(pixels=["7"] * 5 + ["-3"] + ["7"] * 2298), "pixel 6 is '-3'"),
        (good_line(pixels=["7"] * 9 + ["x"] + ["7"] * 2294), "pixel 10 is 'x', not a number"),
        (good_line(pixels=["7"] * 9 + ["1.5"] + ["7"] * 2294), "pixel 10 is '1.5'"),
        (good_line(usage="Validation"), "unknown Usage 'Validation'"),
        (good_line(emotion="7"), "emotion label '7' is not one of 0..6"),
        ("3,1 2 3\n", "2 comma-separated field(s), expected 3"),
    ],
)
def test_malformed_row_names_file_line_and_reason(tmp_path: Path, bad: str, reason: str) -> None:
    f = tmp_path / "fer2013.csv"
    f.write_text("emotion,pixels,Usage\n" + good_line() * 3 + bad + good_line())
    with pytest.raises(DataError) as err:
        FER2013Source(f, cache_dir=tmp_path / "cache").load()
    msg = str(err.value)
    assert str(f) in msg and "line 5: " in msg and reason in msg, msg
    assert "header is line 1" in msg


def test_many_bad_rows_stop_early(tmp_path: Path) -> None:
    f = tmp_path / "fer2013.csv"
    f.write_text("emotion,pixels,Usage\n" + "0,1 2,Training\n" * 50)
    with pytest.raises(DataError, match="stopped after the first 10") as err:
        read_csv(f)
    assert "line 11:" in str(err.value) and "line 12:" not in str(err.value)


@pytest.mark.parametrize(
    "content, reason",
    [
        ("emotion,pixels\n0,1 2\n", "missing column(s): usage"),
        ("", "the file is empty"),
        ("emotion,pixels,Usage\n", "no data rows"),
    ],
)
def test_bad_header_or_empty_file(tmp_path: Path, content: str, reason: str) -> None:
    f = tmp_path / "fer2013.csv"
    f.write_text(content)
    with pytest.raises(DataError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        read_csv(f)


def test_truncated_gzip_and_tar_without_csv(tmp_path: Path) -> None:
    f = write(tmp_path / "fer2013.csv.gz", make_rows(6), "csv.gz")
    f.write_bytes(f.read_bytes()[:-200])
    with pytest.raises(DataError, match="damaged or truncated"):
        read_csv(f)
    t = tmp_path / "fer2013.tar.gz"
    with tarfile.open(t, "w:gz") as tf:
        info = tarfile.TarInfo("fer2013/README")
        info.size = 2
        tf.addfile(info, io.BytesIO(b"hi"))
    with pytest.raises(DataError, match="no .csv file"):
        read_csv(t)


def test_csv_without_publictest_has_no_val_split(tmp_path: Path) -> None:
    rows = [r for r in make_rows(12) if r[2] != "PublicTest"]
    splits = FER2013Source(write(tmp_path / "fer2013.csv", rows), cache_dir=tmp_path / "cache").load()
    assert set(splits) == {"train", "test"}  # the datamodule then holds out part of train


def test_unwritable_cache_only_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "not_a_dir").write_text("")
    rows = make_rows(6)
    check_splits(FER2013Source(write(tmp_path / "fer2013.csv", rows), cache_dir=tmp_path / "not_a_dir").load(), rows)
    assert "could not write the FER2013 cache" in caplog.text


def test_tar_with_other_csv_name_and_zip_message(tmp_path: Path) -> None:
    rows = make_rows(6)
    data = csv_text(rows).encode()
    t = tmp_path / "archive.tar.gz"
    with tarfile.open(t, "w:gz") as tf:
        info = tarfile.TarInfo("data/faces.csv")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    splits = FER2013Source(t, cache_dir=tmp_path / "cache").load()
    check_splits(splits, rows)
    assert splits["train"].paths[0] == f"{t}:data/faces.csv:2"
    (tmp_path / "fer2013.zip").write_bytes(b"PK")
    with pytest.raises(DataError, match="unzip it"):
        FER2013Source(tmp_path / "fer2013.zip").load()


# ----------------------------------------------------------------------------------------------------------- FER+

FERPLUS_HEADER = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF\n"
# (image name, votes in file order) -> expected label name or drop reason
FERPLUS_CASES = [
    ("a.png", [0, 8, 1, 0, 0, 0, 0, 0, 1, 0], "happy"),
    ("b.png", [1, 0, 0, 0, 0, 0, 0, 9, 0, 0], "contempt"),
    ("c.png", [5, 0, 0, 5, 0, 0, 0, 0, 0, 0], "tie"),
    ("d.png", [2, 0, 0, 0, 0, 0, 0, 0, 6, 2], "unknown"),
    ("e.png", [1, 0, 0, 0, 0, 0, 0, 0, 0, 9], "nf"),
    ("", [0, 0, 0, 0, 0, 0, 0, 0, 0, 10], "not_a_face"),
    ("g.png", [4, 0, 0, 0, 4, 0, 0, 0, 2, 0], "tie"),
    ("h.png", [0, 0, 0, 0, 7, 0, 3, 0, 0, 0], "angry"),
    ("i.png", [3, 0, 0, 0, 0, 0, 0, 0, 3, 4], "nf"),
]


def write_ferplus(path: Path, usages: list[str], cases=FERPLUS_CASES) -> Path:
    lines = [f"{u},{name},{','.join(map(str, votes))}\n" for u, (name, votes, _) in zip(usages, cases, strict=True)]
    path.write_text(FERPLUS_HEADER + "".join(lines))
    return path


def test_ferplus_majority_and_drops(tmp_path: Path) -> None:
    rows = make_rows(len(FERPLUS_CASES) * 2)
    f = write(tmp_path / "fer2013.csv", rows)
    cases = FERPLUS_CASES * 2
    fp = write_ferplus(tmp_path / "fer2013new.csv", [u for *_, u in rows], cases)
    src = FER2013Source(f, labels="ferplus", ferplus_path=fp, cache_dir=tmp_path / "cache")
    assert src.class_names == FERPLUS_CLASSES
    splits = src.load()
    for split, data in splits.items():
        want = [(px, case) for (_, px, u), case in zip(rows, cases, strict=True) if SPLIT_OF[u] == split]
        kept = [(px, case[2]) for px, case in want if case[2] in FERPLUS_CLASSES]
        assert [FERPLUS_CLASSES[i] for i in data.labels] == [name for _, name in kept]
        assert np.array_equal(data.images, np.array([px for px, _ in kept], np.uint8).reshape(-1, 48, 48))
        dropped = {}
        for _, case in want:
            if case[2] not in FERPLUS_CLASSES:
                dropped[case[2]] = dropped.get(case[2], 0) + 1
        assert data.meta["dropped"] == dropped
    # found beside the CSV without ferplus_path; the FER2013-labelled cache is shared
    assert len(FER2013Source(f, labels="ferplus", cache_dir=tmp_path / "cache").load()["train"]) == len(splits["train"])


def test_ferplus_row_count_and_order_mismatch(tmp_path: Path) -> None:
    rows = make_rows(len(FERPLUS_CASES))
    f = write(tmp_path / "fer2013.csv", rows)
    fp = write_ferplus(tmp_path / "fer2013new.csv", [u for *_, u in rows][:-1], FERPLUS_CASES[:-1])
    with pytest.raises(DataError, match="has 8 rows but .* has 9"):
        FER2013Source(f, labels="ferplus", ferplus_path=fp, cache_dir=tmp_path / "c").load()
    write_ferplus(fp, ["Training"] * len(rows))
    with pytest.raises(DataError, match="not list the same rows in the same order"):
        FER2013Source(f, labels="ferplus", ferplus_path=fp, cache_dir=tmp_path / "c").load()
    fp.unlink()
    with pytest.raises(DataError, match="microsoft/FERPlus"):
        FER2013Source(f, labels="ferplus", cache_dir=tmp_path / "c").load()
    with pytest.raises(DataError, match="labels="):
        FER2013Source(f, labels="fer+")


def test_ferplus_votes_as_soft_training_targets(tmp_path: Path) -> None:
    """ferplus_votes=w: the training split's targets are (1-w) one-hot(FER2013 label) + w FER+'s votes over the 7
    classes (contempt, unknown, NF left out); FER+'s non-faces leave training; val and test keep FER2013's labels."""
    rows = make_rows(len(FERPLUS_CASES) * 3)
    rows = [(e, px, "Training") if i < len(FERPLUS_CASES) else (e, px, u) for i, (e, px, u) in enumerate(rows)]
    f = write(tmp_path / "fer2013.csv", rows)
    write_ferplus(tmp_path / "fer2013new.csv", [u for *_, u in rows], FERPLUS_CASES * 3)
    plain = FER2013Source(f, cache_dir=tmp_path / "c").load()
    src = FER2013Source(f, cache_dir=tmp_path / "c", ferplus_votes=0.75)
    assert src.class_names == FER2013_CLASSES
    splits = src.load()
    for split in ("val", "test"):
        assert splits[split].targets is None and splits[split].labels.tolist() == plain[split].labels.tolist()
    train = splits["train"]
    # the first 9 rows are Training, one per case: the nameless row leaves, and so do e.png and i.png, where NF is
    # the largest count alone (9 of 10; 4 against 3 and 3)
    kept = [i for i, (name, votes, _) in enumerate(FERPLUS_CASES) if name and not (votes[9] > max(votes[:9]))]
    kept += [i for i in range(len(FERPLUS_CASES), len(rows)) if rows[i][2] == "Training"]
    assert train.labels.tolist() == [rows[i][0] for i in kept]
    assert train.meta["dropped"] == {"not_a_face": len(FERPLUS_CASES) - 6}
    order = [FERPLUS_CLASSES.index(c) for c in FER2013_CLASSES]  # FER+ file columns for angry ... neutral
    for row, target in zip(kept, train.targets, strict=True):
        votes = np.array(FERPLUS_CASES[row % len(FERPLUS_CASES)][1], float)[order]
        onehot = np.eye(7)[rows[row][0]]
        crowd = votes / votes.sum() if votes.sum() else onehot
        np.testing.assert_allclose(target, 0.25 * onehot + 0.75 * crowd, atol=1e-6)
        assert target.dtype == np.float32 and abs(target.sum() - 1) < 1e-5
    # b.png: 1 neutral and 9 contempt votes: the crowd's part is all neutral
    b = kept.index(1)
    assert train.targets[b][FER2013_CLASSES.index("neutral")] == pytest.approx(0.75 + 0.25 * (rows[1][0] == 6))


@pytest.mark.parametrize("votes", [-0.1, 1.5, "half", True])
def test_ferplus_votes_out_of_range(tmp_path: Path, votes) -> None:
    with pytest.raises(DataError, match="ferplus_votes"):
        FER2013Source(tmp_path / "x.csv", ferplus_votes=votes)
    with pytest.raises(DataError, match="labels=ferplus"):
        FER2013Source(tmp_path / "x.csv", labels="ferplus", ferplus_votes=0.5)


# ----------------------------------------------------------------------------------------------------- real data


def test_real_folder_sample(shared_data: Path, tmp_path: Path) -> None:
    splits = FER2013Source(shared_data / "fer2013_folders_sample", cache_dir=tmp_path).load()
    for split in ("train", "test"):
        assert splits[split].images.shape == (84, 48, 48)
        assert np.bincount(splits[split].labels).tolist() == [12] * 7


def test_real_csv_head_matches_naive_parse(shared_data: Path, tmp_path: Path) -> None:
    with gzip.open(shared_data / "fer2013" / "fer2013.csv.gz", "rt") as src:
        lines = [next(src) for _ in range(2001)]
    f = tmp_path / "head.csv"
    f.write_text("".join(lines))
    naive: dict[str, tuple[list, list]] = {"train": ([], []), "val": ([], []), "test": ([], [])}
    for line in lines[1:]:
        emotion, pixels, usage = line.strip().split(",")
        naive[SPLIT_OF[usage]][0].append(list(map(int, pixels.split())))
        naive[SPLIT_OF[usage]][1].append(int(emotion))
    for split, data in FER2013Source(f, cache_dir=tmp_path / "cache").load().items():
        images, labels = naive[split]
        assert data.labels.tolist() == labels
        assert np.array_equal(data.images, np.array(images, dtype=np.uint8).reshape(-1, 48, 48))


@pytest.mark.slow
def test_real_full_csv_and_ferplus(shared_data: Path, tmp_path: Path) -> None:
    f = shared_data / "fer2013" / "fer2013.csv.gz"
    splits = FER2013Source(f, cache_dir=tmp_path).load()
    assert {k: len(v) for k, v in splits.items()} == {"train": 28709, "val": 3589, "test": 3589}
    fp = FER2013Source(f, labels="ferplus", ferplus_path=shared_data / "ferplus" / "fer2013new.csv", cache_dir=tmp_path)
    plus = fp.load()
    assert sum(v.meta["dropped"]["not_a_face"] for v in plus.values()) == 173
    assert all(v.labels.min() >= 0 and v.labels.max() < 8 for v in plus.values())
