"""Checkpoints are self-describing and load without running pickled code; foreign files get a clear error."""

import copy
import os
import pickle
import subprocess
import sys
import warnings
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from test_bad_inputs import INTERPOLATIONS, PLACES, TEXT_PLACES, _evil, _resume_cases, _text_ckpt

from mimic.models import ckpt_reader
from mimic.models.bundled import bundled_path
from mimic.models.card import NET_BUILDERS, CheckpointError, ModelCard
from mimic.models.checkpoint import load_net, read_card, read_checkpoint
from mimic.models.ckpt_reader import PICKLED_CODE, read_checkpoint_card
from mimic.models.classifier import EmotionClassifier
from mimic.models.nets import NETS
from mimic.models.predictor import read_model_card
from mimic.preprocessing import PreprocessSpec, preprocess


def test_round_trip_gives_the_same_predictions(tiny_checkpoint):
    a, b = EmotionClassifier.load(tiny_checkpoint), EmotionClassifier.load(tiny_checkpoint)
    faces = [np.random.default_rng(i).integers(0, 256, (90, 80, 3), dtype=np.uint8) for i in range(4)]
    x = preprocess(faces, a.spec)
    assert torch.equal(a.predict_proba(x), b.predict_proba(x))
    assert a.class_names == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    assert not a.training


def test_state_dict_matches_the_file(tiny_checkpoint):
    model = EmotionClassifier.load(tiny_checkpoint)
    saved = torch.load(tiny_checkpoint, weights_only=True)["state_dict"]
    for k, v in model.state_dict().items():
        assert torch.equal(v, saved[k]), k


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found: .*nope.ckpt"):
        EmotionClassifier.load(tmp_path / "nope.ckpt")


def test_not_a_checkpoint(tmp_path):
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.ckpt is not a mimic checkpoint"):
        EmotionClassifier.load(junk)


def test_foreign_checkpoint_without_our_hparams(tmp_path):
    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "hyper_parameters": {"lr": 0.1}}, other)
    with pytest.raises(CheckpointError, match="lacks net, class_names, preprocess, mimic_version"):
        EmotionClassifier.load(other)


class Evil:
    def __reduce__(self):
        return (print, ("pickled code ran",))


def test_pickled_code_is_not_run(tmp_path, capsys):
    evil = tmp_path / "evil.ckpt"
    with open(evil, "wb") as f:
        torch.save({"state_dict": {}, "hyper_parameters": {"x": Evil()}}, f)
    with pytest.raises(CheckpointError, match="without running pickled code"):
        EmotionClassifier.load(evil)
    assert "pickled code ran" not in capsys.readouterr().out


def test_net_target_must_be_ours(tiny_checkpoint, tmp_path):
    ckpt = read_checkpoint(tiny_checkpoint)
    ckpt["hyper_parameters"]["net"]["_target_"] = "os.system"
    bad = tmp_path / "bad.ckpt"
    torch.save(ckpt, bad)
    with pytest.raises(CheckpointError, match="'os.system'; only mimic's own net builders are built"):
        EmotionClassifier.load(bad)


def test_checkpoints_as_written_before_still_load(tiny_checkpoint, tmp_path):
    """Today's configs spell the net's builder mimic.models.small_cnn.small_cnn, store the optimizer and scheduler
    configs, and older files carry an empty ``preprocess.extra``: all of it loads, to the same predictions."""
    ckpt = torch.load(tiny_checkpoint, weights_only=True)
    hp = ckpt["hyper_parameters"]
    assert hp["net"]["_target_"] == "mimic.models.small_cnn.small_cnn"
    hp["preprocess"]["extra"] = {}
    hp["optimizer"] = {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.05, "momentum": 0.9}
    hp["scheduler"] = {"_target_": "mimic.models.classifier.warmup_cosine", "_partial_": True, "warmup_fraction": 0.03}
    old = tmp_path / "old.ckpt"
    torch.save(ckpt, old)
    x = preprocess([np.full((60, 60), 99, np.uint8), np.zeros((48, 48), np.uint8)], PreprocessSpec())
    want = EmotionClassifier.load(tiny_checkpoint).predict_proba(x)
    assert torch.equal(EmotionClassifier.load(old).predict_proba(x), want)
    net, card = load_net(old)
    assert card.preprocess == PreprocessSpec() and card.net["widths"] == [8, 16, 32]


def test_the_model_card_says_what_the_checkpoint_says(tiny_checkpoint, tmp_path):
    ckpt = torch.load(tiny_checkpoint, weights_only=True)
    ckpt["hyper_parameters"].update(tta_flip=True, channels_last=False, weights="imagenet")
    ckpt["state_dict"]["temperature"] = torch.tensor(1.7)
    path = tmp_path / "card.ckpt"
    torch.save(ckpt, path)
    card, raw = read_card(path)
    assert card == ModelCard(
        net={"_target_": "mimic.models.small_cnn.small_cnn", "widths": [8, 16, 32], "hidden": 32},
        class_names=["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"],
        preprocess=PreprocessSpec(),
        temperature=pytest.approx(1.7),
        tta_flip=True,
        channels_last=False,
        mimic_version=ckpt["hyper_parameters"]["mimic_version"],
    )
    model = EmotionClassifier.load(path)
    assert model.hparams.tta_flip and not model.hparams.channels_last and model.hparams.weights is None
    assert float(model.temperature) == pytest.approx(1.7)


# ------------------------------------------------------------------------------------ the card read without torch
def _read_both(path: Path) -> tuple:
    """(the card read without torch, the card read by torch) of ``path``: each a `ModelCard` or its error's text."""
    found = []
    for read in (read_checkpoint_card, lambda p: read_card(p)[0]):
        try:
            found.append(read(path))
        except CheckpointError as e:
            found.append(str(e))
    return tuple(found)


def test_the_card_read_without_torch_is_the_card_torch_reads(tiny_checkpoint, tmp_path):
    """The tiny checkpoint, the bundled model (fp16 weights) and one with a fitted temperature, bfloat16 weights and
    tensors that are strided views of a shared storage: one card from both readers, and the same numbers."""
    ckpt = torch.load(tiny_checkpoint, weights_only=True)
    ckpt["hyper_parameters"].update(tta_flip=True, channels_last=False)
    state = ckpt["state_dict"]
    state["temperature"] = torch.tensor([[1.7]], dtype=torch.float16)
    state["net.conv1.0.weight"] = state["net.conv1.0.weight"].to(torch.bfloat16)
    shared = torch.arange(60, dtype=torch.float64).reshape(6, 10)
    shared[0, 0] = float("nan")  # in the storage, outside every view: not a weight
    state["extra.view"], state["extra.transposed"] = shared[1:, 2::3], shared[2:4].t()
    state["extra.empty"], state["extra.flag"] = shared[:0], torch.tensor([True, False])
    views = tmp_path / "views.ckpt"
    torch.save(ckpt, views)
    for path in (tiny_checkpoint, bundled_path(), views):
        free, torch_card = _read_both(path)
        assert isinstance(free, ModelCard) and free == torch_card, (path, free, torch_card)
    assert free.temperature == float(torch.tensor(1.7, dtype=torch.float16)) and free.tta_flip
    with zipfile.ZipFile(views) as archive:
        arrays = ckpt_reader._load(archive)["state_dict"]
        for name, tensor in state.items():
            want = tensor.float() if tensor.dtype == torch.bfloat16 else tensor
            assert np.array_equal(arrays[name].numpy(), want.numpy(), equal_nan=True), name


@pytest.fixture(scope="module")
def clean(tiny_checkpoint) -> dict:
    return torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)


def test_both_readers_give_one_error_per_bad_file(clean, tiny_checkpoint, tmp_path):
    """Every bad checkpoint of tests/test_bad_inputs.py and this file, and more: the same card or the same error from
    both readers (an unreadable file's error may say in other words why torch could not read it)."""
    files = {name: path for name, (path, _) in _resume_cases(clean, tiny_checkpoint, tmp_path).items()}
    payload = {"_target_": "os.system", "_args_": [f"touch {tmp_path / 'PWNED'}"]}
    for where in PLACES:
        files[f"code in {where}"] = _evil(clean, where, payload, tmp_path / f"{where}.ckpt")
    for place in TEXT_PLACES:
        for name, text in INTERPOLATIONS.items():
            files[f"{name} in {place}"] = _text_ckpt(clean, place, text, tmp_path / f"{name}-{place}.ckpt")

    def edited(name: str, edit) -> None:
        ckpt = copy.deepcopy(clean)
        edit(ckpt)
        files[name] = tmp_path / f"{name}.ckpt"
        torch.save(ckpt, files[name])

    hp = "hyper_parameters"
    edited("class names not strings", lambda c: c[hp].update(class_names=[1, 2, 3, 4, 5, 6, 7]))
    edited("one class", lambda c: c[hp].update(class_names=["happy"]))
    edited("preprocess not numbers", lambda c: c[hp]["preprocess"].update(size="48"))
    edited("tta_flip not a bool", lambda c: c[hp].update(tta_flip="yes"))
    edited("a tensor among the hparams", lambda c: c[hp]["net"].update(hidden=torch.tensor(32)))
    edited("no version", lambda c: c[hp].pop("mimic_version"))
    edited("a number in the state_dict", lambda c: c["state_dict"].update(step=3))
    edited("a list", lambda c: c.clear())
    edited("two temperatures", lambda c: c["state_dict"].update(temperature=torch.tensor([1.0, 2.0])))
    edited("negative temperature", lambda c: c["state_dict"].update(temperature=torch.tensor(-1.0)))
    edited("NaN temperature", lambda c: c["state_dict"].update(temperature=torch.tensor(float("nan"))))
    edited("NaN weight", lambda c: c["state_dict"]["net.conv2.0.weight"][0, :3, 0, 0].fill_(float("nan")))
    edited("inf fp16 weight", lambda c: c["state_dict"].update(x=torch.tensor([1, float("inf")], dtype=torch.half)))
    edited("inf bf16 weight", lambda c: c["state_dict"].update(x=torch.tensor([float("-inf")], dtype=torch.bfloat16)))
    (tmp_path / "empty.ckpt").write_bytes(b"")
    files["empty"] = tmp_path / "empty.ckpt"
    with open(tmp_path / "pickled dict.ckpt", "wb") as f:
        pickle.dump({"state_dict": {}}, f, protocol=2)
    files["a plain pickle"] = tmp_path / "pickled dict.ckpt"
    for name, path in files.items():
        free, by_torch = _read_both(path)
        if isinstance(by_torch, str) and "could not be read as a PyTorch checkpoint" in by_torch:
            assert free.split(" code (")[0] == by_torch.split(" code (")[0], (name, free, by_torch)
        else:
            assert free == by_torch, (name, free, by_torch)
    assert not (tmp_path / "PWNED").exists()


class Marker:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_a_pickle_naming_other_code_is_refused_without_running_it(tiny_checkpoint, tmp_path):
    """``os.system`` in a checkpoint's pickle (torch's zip or a bare pickle) is refused before it is looked up, by
    `read_model_card` as by torch: the marker file it would create never appears."""
    marker = tmp_path / "PWNED"
    ckpt = torch.load(tiny_checkpoint, weights_only=True)
    ckpt["hyper_parameters"]["about"] = {"x": Marker(marker)}
    zipped, bare = tmp_path / "zipped.ckpt", tmp_path / "bare.ckpt"
    torch.save(ckpt, zipped)
    bare.write_bytes(pickle.dumps(ckpt, protocol=2))
    for path in (zipped, bare):
        for read in (read_model_card, read_card):
            with pytest.raises(CheckpointError) as e:
                read(path)
            assert str(e.value).startswith(f"{path} is not a mimic checkpoint") and PICKLED_CODE in str(e.value)
    assert not marker.exists()
    pickle.loads(pickle.dumps(Marker(marker)))
    assert marker.exists()  # the payload is live: it runs when unpickled without the restriction


class _Bogus:
    """Pickles as torch's rebuilder of a tensor of 1000 numbers in a storage of 4."""

    def __reduce__(self):
        with warnings.catch_warnings():  # the typed storage torch.save writes for every tensor: deprecated to call
            warnings.simplefilter("ignore")
            storage = torch.zeros(4).storage()
        return (torch._utils._rebuild_tensor_v2, (storage, 0, (1000,), (1,), False, OrderedDict()))


def test_damaged_checkpoints_are_refused_without_torch(tiny_checkpoint, tmp_path):
    """A zip cut short, a tensor said to reach past its storage, a storage cut short, and a checkpoint in torch's old
    format (which torch still reads): each a `CheckpointError` naming the file, never a read past the data."""
    data = tiny_checkpoint.read_bytes()
    cases = {"cut.ckpt": "the zip archive is cut short or damaged", "past.ckpt": "reaches past its storage"}
    (tmp_path / "cut.ckpt").write_bytes(data[: len(data) // 2])
    ckpt = torch.load(tiny_checkpoint, weights_only=True)
    torch.save({**ckpt, "state_dict": {**ckpt["state_dict"], "x": _Bogus()}}, tmp_path / "past.ckpt")
    with zipfile.ZipFile(tiny_checkpoint) as src, zipfile.ZipFile(tmp_path / "short.ckpt", "w") as dst:
        for info in src.infolist():
            content = src.read(info)
            dst.writestr(info, content[:-4] if info.filename.endswith("/data/1") else content)
    cases["short.ckpt"] = "data/1 holds 284 bytes, not the 288 of its 72 numbers"
    torch.save(ckpt, tmp_path / "old.ckpt", _use_new_zipfile_serialization=False)
    cases["old.ckpt"] = "format of before 1.6"
    for name, message in cases.items():
        with pytest.raises(CheckpointError) as e:
            read_model_card(tmp_path / name)
        assert str(e.value).startswith(f"{tmp_path / name} is not a mimic checkpoint") and message in str(e.value)
    assert read_card(tmp_path / "old.ckpt")[0] == read_model_card(tiny_checkpoint)


def test_reading_a_card_imports_no_torch():
    code = (
        "import sys\n"
        "from mimic.models.bundled import bundled_path\n"
        "from mimic.models.predictor import read_model_card\n"
        "assert read_model_card(bundled_path()).class_names\n"
        "print(sorted({'torch', 'lightning'} & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_net_builders_a_card_may_name_are_the_nets_mimic_builds():
    assert tuple(NETS) == NET_BUILDERS
