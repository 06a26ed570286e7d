"""EmotionDataModule: merging sources by name, drop counts, missing classes, splits, sampling weights, batches."""

import logging

import numpy as np
import pytest
import torch

from mimic.data.base import DataError, SplitData
from mimic.data.datamodule import EmotionDataModule
from mimic.labels import FER2013_CLASSES, UnknownClassError


class ArraySource:
    """A source over arrays the test makes: every image's pixel value is its index, so splits can be traced."""

    def __init__(self, name, class_names, labels, with_val=True, start=0):
        self.name, self.class_names = name, tuple(class_names)
        n = len(labels)
        imgs = ((np.arange(n) + start) % 256).astype(np.uint8)[:, None, None] * np.ones((1, 48, 48), np.uint8)
        self.splits = {"train": SplitData(imgs, np.asarray(labels))}
        if with_val:
            self.splits["val"] = SplitData(imgs[:7], np.asarray(labels[:7]))
        self.splits["test"] = SplitData(imgs[:7], np.asarray(labels[:7]))

    def load(self):
        return dict(self.splits)


def test_merge_onto_a_class_set_by_name(caplog):
    fer = ArraySource("fer2013", FER2013_CLASSES, np.arange(70) % 7)  # 10 of each FER2013 class
    web = ArraySource("webcam", ["neutral", "happy", "sad"], np.arange(30) % 3, with_val=False, start=100)
    dm = EmotionDataModule({"fer2013": fer, "webcam": web}, ["happy", "sad", "neutral"], val_fraction=0.2, seed=1)
    with caplog.at_level(logging.INFO):
        dm.setup("fit")
    assert "fer2013/train: dropped 40 of 70" in caplog.text
    # FER2013: happy(3), sad(4), neutral(6) -> 0, 1, 2; webcam: 8 of 10 per class stay in train
    assert dm.class_counts("train").tolist() == [10 + 8, 10 + 8, 10 + 8]
    assert np.bincount(dm.dataset("train").sources).tolist() == [30, 24]  # images per source
    assert np.bincount(dm.dataset("val").sources)[1] == 6


def test_folder_split_is_seeded_and_disjoint():
    web = ArraySource("webcam", ["happy", "sad"], np.arange(40) % 2, with_val=False)
    a = EmotionDataModule({"webcam": web}, ["happy", "sad"], val_fraction=0.25, seed=3)
    b = EmotionDataModule({"webcam": web}, ["happy", "sad"], val_fraction=0.25, seed=3)
    a.setup(), b.setup()
    train_ids = set(a.data["train"]["images"][:, 0, 0, 0].tolist())
    val_ids = set(a.data["val"]["images"][:, 0, 0, 0].tolist())
    assert not train_ids & val_ids and len(train_ids | val_ids) == 40
    assert np.array_equal(a.data["val"]["images"], b.data["val"]["images"])


def test_a_class_no_source_provides_is_an_error_before_training():
    fer = ArraySource("fer2013", FER2013_CLASSES, np.arange(14) % 7)
    with pytest.raises(UnknownClassError, match=r"no source provides \['contempt'\].*fer2013: angry, disgust"):
        EmotionDataModule({"fer2013": fer}, ["happy", "contempt"])


def test_source_weights_balance_the_mix():
    fer = ArraySource("fer2013", FER2013_CLASSES, np.arange(700) % 7)
    web = ArraySource("webcam", ["happy"], np.zeros(20, int), start=200)
    dm = EmotionDataModule(
        {"fer2013": fer, "webcam": web},
        list(FER2013_CLASSES),
        batch_size=100,
        source_weights={"fer2013": 1.0, "webcam": 1.0},
    )
    sources = torch.cat([b[2] for b in dm.train_dataloader()])
    share = float((sources == 1).float().mean())
    assert 0.4 < share < 0.6  # 20 webcam faces drawn as often as 700 FER2013 ones


def test_batches_are_normalised_tensors():
    fer = ArraySource("fer2013", FER2013_CLASSES, np.arange(70) % 7)
    dm = EmotionDataModule({"fer2013": fer}, list(FER2013_CLASSES), batch_size=16)
    x, y, src, index = next(iter(dm.val_dataloader()))
    assert x.shape == (7, 1, 48, 48) and x.dtype == torch.float32 and y.dtype == torch.long
    assert float(x[1].mean()) == pytest.approx((1 / 255 - 0.5) / 0.5)


def test_unknown_source_weight_names_the_sources():
    fer = ArraySource("fer2013", FER2013_CLASSES, np.arange(14) % 7)
    with pytest.raises(DataError, match=r"source_weights names \['webcam'\]"):
        EmotionDataModule({"fer2013": fer}, ["happy", "sad"], source_weights={"webcam": 2})


def test_test_split_chooses_what_test_dataloader_serves_and_ids_follow():
    web = ArraySource("webcam", ["happy", "sad"], np.arange(40) % 2, with_val=False)
    dm = EmotionDataModule({"webcam": web}, ["happy", "sad"], val_fraction=0.25, test_split="val", eval_batch_size=4)
    dm.setup("test")
    x, y, src, index = next(iter(dm.test_dataloader()))
    assert len(dm.ids("val")) == 10 and index.tolist() == [0, 1, 2, 3]
    pixel = ((x[:, 0, 0, 0] * 0.5 + 0.5) * 255).round().int().tolist()  # each image's row in the source
    assert list(dm.ids("val")[index.numpy()]) == [f"webcam:train:{v}" for v in pixel]  # a source without paths


def test_test_only_makes_every_image_test_data_without_a_training_split(caplog):
    fer = ArraySource("fer2013", FER2013_CLASSES, np.arange(70) % 7)  # train 70, val 7, test 7
    with caplog.at_level(logging.WARNING):
        dm = EmotionDataModule({"fer2013": fer}, ["happy", "sad", "contempt"], test_only=True)
        dm.setup("test")
    assert "no test images of ['contempt']" in caplog.text and "dropped 60 of 84" in caplog.text
    assert set(dm.data) == {"test"} and dm.class_counts("test").tolist() == [12, 12, 0]
    with pytest.raises(DataError, match="test_only.*nothing to train on"):
        dm.setup("fit")
    dm.test_split = "val"
    with pytest.raises(DataError, match="every image of .* is test data .*split=test"):
        dm.setup("test")


def test_no_training_images_is_an_error_only_when_fitting():
    class TestOnly:
        name, class_names = "held", ("happy", "sad")

        def load(self):
            return {"test": SplitData(np.zeros((4, 48, 48), np.uint8), np.array([0, 1, 0, 1]), list("abcd"))}

    dm = EmotionDataModule({"held": TestOnly()}, ["happy", "sad"])
    dm.setup("test")
    assert list(dm.ids("test")) == list("abcd")
    with pytest.raises(DataError, match="no training images"):
        dm.setup("fit")


def test_soft_targets_follow_the_class_mapping_and_reach_the_loss():
    """A source's soft targets (FER+ votes) are remapped onto the run's classes by name and renormalised; a source
    without them gets one-hot rows; only training batches carry them (fifth), and the training loss is the
    cross-entropy against them, not against the hard labels."""
    from mimic.models.classifier import EmotionClassifier

    labels = np.arange(70) % 7
    fer = ArraySource("fer2013", FER2013_CLASSES, labels)
    votes = np.full((70, 7), 0.1, np.float32)
    votes[np.arange(70), labels] = 0.4  # each row: 0.4 on its label, 0.1 on each other class
    votes[3] = np.eye(7)[0]  # a happy face the crowd called angry, a class this run lacks: it stays happy, one-hot
    fer.splits["train"].targets = votes
    web = ArraySource("webcam", ["neutral", "happy", "sad"], np.arange(30) % 3, with_val=False, start=100)
    classes = ["happy", "sad", "neutral"]
    dm = EmotionDataModule({"fer2013": fer, "webcam": web}, classes, val_fraction=0.2, seed=1, batch_size=256)
    dm.setup("fit")
    data = dm.data["train"]
    from_fer = data["sources"] == 0
    # a FER2013 happy row: 0.4 happy, 0.1 sad, 0.1 neutral of the 0.6 left -> 2/3, 1/6, 1/6
    happy = from_fer & (data["labels"] == 0)
    rows = data["targets"][happy]
    assert rows.tolist().count([1, 0, 0]) == 1  # the one the crowd called angry
    np.testing.assert_allclose(rows[rows[:, 0] < 1], np.tile([2 / 3, 1 / 6, 1 / 6], (len(rows) - 1, 1)), atol=1e-6)
    np.testing.assert_array_equal(data["targets"][~from_fer], np.eye(3, dtype=np.float32)[data["labels"][~from_fer]])
    torch.manual_seed(0)  # the sampler draws from torch's global generator: the same batch whatever ran before
    x, y, src, index, target = next(iter(dm.train_dataloader()))
    assert target.shape == (len(y), 3) and target.dtype == torch.float32
    assert len(next(iter(dm.val_dataloader()))) == 4
    model = EmotionClassifier(
        net={"_target_": "mimic.models.small_cnn.small_cnn", "widths": [4, 8, 8], "hidden": 8},
        class_names=classes,
        label_smoothing=0.0,
    )
    seen, loss_of = [], model.loss
    model.loss = lambda logits, t: seen.append(t) or loss_of(logits, t)
    model.training_step((x, y, src, index, target), 0)
    assert seen[0] is target
    logits = torch.randn(len(y), 3, generator=torch.Generator().manual_seed(0))
    want = -(target * torch.log_softmax(logits, 1)).sum(1).mean()
    assert float(loss_of(logits, target)) == pytest.approx(float(want), rel=1e-5)
    soft = target.max(1).values < 1  # the rows whose soft target is not their label
    assert int(soft.sum()) >= 5
    hard = torch.nn.functional.cross_entropy(logits[soft], y[soft])
    assert float(loss_of(logits[soft], target[soft])) != pytest.approx(float(hard), rel=1e-2)


def test_mixup_blends_each_face_with_another_face_and_their_targets_alike():
    """model.mixup: every training face becomes share * itself + (1 - share) * another face of the batch, one share
    for the batch, and its target the same blend of the two targets (labels as one-hot rows, soft targets as given)."""
    from mimic.models.classifier import EmotionClassifier

    net = {"_target_": "mimic.models.small_cnn.small_cnn", "widths": [4, 8, 8], "hidden": 8}
    x = torch.randn(12, 1, 48, 48, generator=torch.Generator().manual_seed(0))
    y = torch.arange(12) % 3
    soft = torch.softmax(torch.randn(12, 3, generator=torch.Generator().manual_seed(1)), 1)

    def seen_in_training(alpha: float, batch: tuple) -> list[torch.Tensor]:  # the faces the net gets, then the targets
        model = EmotionClassifier(net=net, class_names=["happy", "sad", "neutral"], label_smoothing=0.0, mixup=alpha)
        seen, forward = [], model.forward
        model.forward = lambda faces: seen.append(faces) or forward(faces)
        model.loss = lambda logits, t: seen.append(t) or logits.sum() * 0
        torch.manual_seed(2)
        model.training_step(batch, 0)
        return seen

    for alpha, target in [(0.0, y), (0.4, y), (0.4, soft)]:
        faces, targets = seen_in_training(alpha, (x, y) if target is y else (x, y, y, y, target))
        if alpha == 0:
            assert faces is x and targets is y
            continue
        rows = target if target.is_floating_point() else torch.eye(3)[target]
        flat, mixed = x.flatten(1), faces.flatten(1)
        partner, shares = [], []
        for i in range(len(x)):  # the face j and share s with mixed[i] = s * x[i] + (1 - s) * x[j]
            fits = []
            for j in range(len(x)):
                d = flat[i] - flat[j]
                s = 1.0 if j == i else float((mixed[i] - flat[j]) @ d / (d @ d))
                fits.append((float((mixed[i] - flat[j] - s * d).abs().max()), j, s))
            err, j, s = min(fits)
            assert err < 1e-4
            partner.append(j), shares.append(s)
        assert sorted(partner) == list(range(len(x))) and partner != list(range(len(x)))  # a shuffle of the batch
        share = shares[partner.index(next(j for i, j in enumerate(partner) if j != i))]
        assert 0 < share < 1
        for i, j in enumerate(partner):
            assert j == i or shares[i] == pytest.approx(share, abs=1e-4)
            torch.testing.assert_close(targets[i], share * rows[i] + (1 - share) * rows[j], atol=1e-5, rtol=0)
        torch.testing.assert_close(targets.sum(1), torch.ones(len(x)))


def test_a_teacher_model_gives_soft_targets_read_on_the_clean_faces(tmp_path):
    """data.teacher: the teacher's probabilities on each training face as stored (before augmentation), mapped onto
    the run's classes by name, mixed with the label by its weight; validation and test keep hard labels."""
    import albumentations as A
    from conftest import train_tiny_checkpoint

    from mimic.models.predictor import Predictor

    teacher_file = train_tiny_checkpoint(tmp_path / "teacher.ckpt", classes=["neutral", "sad", "happy"], steps=5)
    rng = np.random.default_rng(0)
    labels = np.arange(60) % 7
    fer = ArraySource("fer2013", FER2013_CLASSES, labels)
    fer.splits["train"].images = rng.integers(0, 256, (60, 48, 48), np.uint8)  # faces the teacher reads differently
    classes = ["happy", "sad", "neutral"]
    dark = [A.RandomBrightnessContrast(brightness_limit=(-0.9, -0.9), contrast_limit=0, p=1)]
    dm = EmotionDataModule(
        {"fer2013": fer}, classes, augment=dark, teacher={"ckpt": str(teacher_file), "weight": 0.25}, batch_size=256
    )
    dm.setup("fit")
    data = dm.data["train"]
    read = Predictor(teacher_file).predict_crops(list(data["images"][..., 0]))  # neutral, sad, happy
    want = 0.75 * np.eye(3)[data["labels"]] + 0.25 * read[:, [2, 1, 0]]
    np.testing.assert_allclose(data["targets"], want, atol=1e-5)
    assert len(np.unique(data["targets"].round(4), axis=0)) > 3  # the teacher's reading differs between faces
    x, y, _, index, target = next(iter(dm.train_dataloader()))
    assert float(x.mean()) < -0.8  # the augmented faces are dark; their targets are the clean faces'
    np.testing.assert_allclose(target.numpy(), want[index.numpy()], atol=1e-5)
    assert len(next(iter(dm.val_dataloader()))) == 4

    # two teachers are one ensemble: the mean of their readings, each mapped onto the run's classes
    other_file = train_tiny_checkpoint(tmp_path / "other.ckpt", classes=["happy", "sad", "neutral"], steps=5, seed=1)
    both = EmotionDataModule(
        {"fer2013": fer}, classes, teacher={"ckpt": [str(teacher_file), other_file], "weight": 0.25}, batch_size=256
    )
    both.setup("fit")
    other = Predictor(other_file).predict_crops(list(data["images"][..., 0]))  # happy, sad, neutral
    mean = (read[:, [2, 1, 0]] + other) / 2
    np.testing.assert_allclose(both.data["train"]["targets"], 0.75 * np.eye(3)[data["labels"]] + 0.25 * mean, atol=1e-5)

    off = EmotionDataModule({"fer2013": fer}, classes, teacher={"ckpt": None, "weight": 0.5})
    off.setup("fit")
    assert "targets" not in off.data["train"]
    for bad in (
        {"ckpt": str(teacher_file), "weight": 0},
        {"ckpt": str(teacher_file), "weight": 1.5},
        {"ckpt": str(teacher_file), "wieght": 0.5},
        {"ckpt": [], "weight": 0.5},
        {"ckpt": [str(teacher_file), 3], "weight": 0.5},
    ):
        with pytest.raises(DataError, match=r"data.teacher=.*weight, from above 0 to 1"):
            EmotionDataModule({"fer2013": fer}, classes, teacher=bad)
    missing = EmotionDataModule({"fer2013": fer}, classes, teacher={"ckpt": str(tmp_path / "gone.ckpt")})
    with pytest.raises(DataError, match=r"data.teacher.ckpt=.*gone.ckpt: no such model file"):
        missing.setup("fit")
    one_missing = {"ckpt": [str(teacher_file), str(tmp_path / "gone.ckpt")]}
    with pytest.raises(DataError, match=r"data.teacher.ckpt=\S*gone.ckpt: no such model file"):
        EmotionDataModule({"fer2013": fer}, classes, teacher=one_missing).setup("fit")
    (tmp_path / "notes.ckpt").write_text("not a model")
    wrong = EmotionDataModule({"fer2013": fer}, classes, teacher={"ckpt": str(tmp_path / "notes.ckpt")})
    with pytest.raises(DataError, match=r"data.teacher.ckpt=.*notes.ckpt: .*not a mimic checkpoint"):
        wrong.setup("fit")
