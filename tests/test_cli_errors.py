"""User mistakes end in one clear message on stderr and exit status 2, never a traceback."""

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, TINY_SYNTHETIC, load_script

from mimic.args import Key, boolean, integers, parse
from mimic.errors import UserError

GOOD_ROW = "3," + " ".join(["128"] * 2304) + ",Training\n"


def _bad_csv(tmp_path):
    path = tmp_path / "fer2013.csv"
    path.write_text("emotion,pixels,Usage\n" + GOOD_ROW + "4," + " ".join(["7"] * 2000) + ",Training\n" + GOOD_ROW)
    return path


CASES = {
    "missing_dataset": (
        ["train.py", "data=fer2013", "data.path={tmp}/nowhere/fer2013.csv"],
        ["FER2013 not found", "nowhere", "data.path=", "kaggle"],
    ),
    "missing_public_dataset": (
        ["scripts/evaluate.py", "data=affectnet", "data.path={tmp}/nowhere"],
        ["AffectNet not found", "training.csv", "mohammadmahoor.com", "data.path"],
    ),
    "malformed_row": (
        ["train.py", "data=fer2013", "data.path={tmp}/fer2013.csv"],
        ["fer2013.csv", "line 3", "2000"],
    ),
    "unknown_class": (
        ["train.py", *TINY_SYNTHETIC, "data.classes=[happy,smug]"],
        ["smug", "Known classes", "angry"],
    ),
    "missing_checkpoint": (
        ["scripts/evaluate.py", "ckpt={tmp}/missing.ckpt", "data=synthetic"],
        ["checkpoint not found", "missing.ckpt"],
    ),
    "offline_pretrained_weights": (
        ["train.py", "data=synthetic", "model=resnet18", "model.weights={tmp}/resnet18-f37072fd.pth", "debug=fdr"],
        ["model.weights=", "resnet18-f37072fd.pth", "no such file"],
    ),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """All cases at once, in parallel processes, to keep the wall time down."""
    tmp = tmp_path_factory.mktemp("cli")
    _bad_csv(tmp)
    procs = {}
    for name, (argv, _) in CASES.items():
        args = [a.replace("{tmp}", str(tmp)) for a in argv]
        args += [f"hydra.run.dir={tmp}/{name}"]
        procs[name] = subprocess.Popen(
            [sys.executable, str(REPO / args[0]), *args[1:]],
            cwd=tmp,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    outputs = {name: p.communicate(timeout=300) for name, p in procs.items()}  # reads pipes: no deadlock on full ones
    return {name: (procs[name].returncode, *outputs[name]) for name in procs}


@pytest.mark.slow  # every command in its own process (about 20 s); test_bad_inputs checks the same in-process
@pytest.mark.parametrize("name", list(CASES))
def test_user_mistake_is_one_clear_message(runs, name):
    code, out, err = runs[name]
    assert code == 2, err[-2000:]
    assert "Traceback" not in err and "Traceback" not in out
    message = err.strip().splitlines()[-1] if "\n" not in err.split("error: ", 1)[-1] else err.split("error: ", 1)[-1]
    for needle in CASES[name][1]:
        assert needle.lower() in message.lower(), message


# --- the scripts' key=value arguments (mimic.args) ------------------------------------------------------------
KEYS = {
    "count": Key(int, 50, "how many"),
    "label": Key(str, None, "a class"),
    "preview": Key(boolean, True, "show a window"),
    "sides": Key(integers, [1280, 2048], "sizes"),
    "data.path": Key(Path, None, "FER2013"),
}
SCRIPTS = sorted(
    str(p.relative_to(REPO / "scripts").with_suffix(""))
    for p in [*(REPO / "scripts").glob("*.py"), *(REPO / "scripts" / "bench").glob("*.py")]
    if p.name != "evaluate.py"  # a Hydra command: Hydra reads its key=value words
)


def test_key_value_words_are_read_by_type_with_defaults():
    args = parse(["count=3", "preview=False", "sides=[640,480]", "data.path=~/fer.csv", "label=null"], KEYS)
    assert (args.count, args.preview, args.sides, args.label) == (3, False, [640, 480], None)
    assert args.data_path == Path("~/fer.csv").expanduser() and args.extra == []
    defaults = parse([], KEYS)
    assert (defaults.count, defaults.preview, defaults.sides, defaults.data_path) == (50, True, [1280, 2048], None)
    defaults.sides.append(1)
    assert parse([], KEYS).sides == [1280, 2048]  # a default is never shared between two parses


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["colour=red"], "unknown key 'colour' in 'colour=red'; the keys are count, label, preview, sides, data.path"),
        (["count=many"], "count=many: expected count=<whole number>"),
        (["preview=yes"], "preview=yes: expected preview=<true|false>"),
        (["count=null"], "count=null: expected count=<whole number>"),
        (["count=1", "count=2"], "count is given twice ('count=1' and 'count=2')"),
        (["--count", "3"], "'--count' is not key=value: write count=<whole number>"),
        (["--no-preview"], "'--no-preview' is not key=value: write preview=false"),
        (["--preview"], "'--preview' is not key=value: write preview=true"),
        (["happy"], "'happy' is not key=value (--help lists the keys)"),
        (["=3"], "'=3' is not key=value"),
    ],
)
def test_a_bad_word_is_a_user_error_naming_it(argv, message):
    with pytest.raises(UserError) as e:
        parse(argv, KEYS)
    assert message in str(e.value)


def test_required_keys_and_passed_on_keys():
    keys = {"out": Key(Path, None, "the folder", required=True)}
    with pytest.raises(UserError, match=r"missing out=<path> \(the folder\)"):
        parse([], keys)
    args = parse(["out=x", "spec.framing=box", "+spec.size=64"], keys, extra="spec.")
    assert args.out == Path("x") and args.extra == ["spec.framing=box", "+spec.size=64"]
    with pytest.raises(UserError, match="unknown key 'trainer.max_epochs'"):
        parse(["out=x", "trainer.max_epochs=1"], keys, extra="spec.")
    assert parse(["out=x", "trainer.max_epochs=1"], keys, extra="").extra == ["trainer.max_epochs=1"]


def test_help_prints_the_doc_and_every_key(capsys):
    with pytest.raises(SystemExit) as e:
        parse(["count=3", "--help"], KEYS, "What the script does.", extra_help="spec.<field>=<value>")
    out = capsys.readouterr().out
    assert e.value.code == 0 and out.startswith("What the script does.")
    assert "count=<whole number>" in out and "(default: 50)" in out and "sides=<1,2,...>" in out
    assert "(default: [1280,2048])" in out and "spec.<field>=<value>" in out


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_takes_key_value_words_and_says_what_is_wrong(script, capsys):
    """Each script: ``--help`` lists its keys (exit 0); a word that is not key=value is one error line, exit 2."""
    main = load_script(script).main
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and "keys (key=value):" in out and "=<" in out
    with pytest.raises(SystemExit) as e:
        main(["--frames", "30"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: '--frames' is not key=value") and err.count("\n") == 1


def test_a_script_run_with_an_unknown_key_exits_2_without_a_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "merge_datasets.py"), f"out={tmp_path}/m", "inputs=a", "--dry-run"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    message = "error: '--dry-run' is not key=value: write dry_run=true (--help lists the keys)\n"
    assert proc.returncode == 2 and proc.stderr == message
