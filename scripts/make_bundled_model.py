"""Make the pretrained model mimic ships (src/mimic/assets/mimic_small_cnn_fer2013.ckpt) from a FER2013 training run.

    python scripts/make_bundled_model.py train=true data=/path/to/fer2013.csv.gz   # train with the recipe, then pack
    python scripts/make_bundled_model.py run=outputs/train/bundled_warm_seed2 data=...  # pack a finished run

Training runs the bundled model's recipe in its two stages: the project's default recipe, ``python train.py
model=small_cnn data=fer2013 seed=42`` (50 epochs, about 2.5 hours on a 2-core CPU; the bundled model until
2026-12-05), then ``python train.py experiment=fer2013_robust_warm seed=2 init_from=<that run>`` (12 epochs on dim,
noisy, small and tilted copies of the faces, about 25 minutes, ending with ``logit_adjust``; docs/benchmarks.md, "Real
faces"). ``init_from`` names the first stage's run, not ``bundled``: once packed, the bundled model is the second
stage's. Packing keeps what inference and fine-tuning read from the run's best checkpoint
(the net's config, class names, preprocessing spec, flip-TTA setting and calibration temperature; a logit adjustment
the run made, ``logit_adjust=``, is in its weights and named in the card), stores the weights as fp16, then tests the
packed file itself on FER2013's PrivateTest split with `scripts/evaluate.py` and writes that accuracy, the command
(the run's own overrides), seed, commit and the data's licence note into the card's ``about`` (with, for a run that
started from or was taught by other models, ``init_from=`` or ``data.teacher.ckpt=``, their own commands), and the
same as a text file beside it (``LICENSE.mimic_small_cnn_fer2013.txt``). The files are written atomically; an
existing bundled model is replaced only with ``force=true``. ``--help`` lists the keys.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from omegaconf import OmegaConf

from mimic.args import Key, boolean, parse
from mimic.cli import user_errors
from mimic.errors import UserError
from mimic.finetune import best_checkpoint, resolve_checkpoint
from mimic.io import atomic_write, write_bytes
from mimic.models.bundled import BUNDLED_FILE
from mimic.models.checkpoint import read_card
from mimic.version import __version__

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "src" / "mimic" / "assets"
RECIPE = ["model=small_cnn", "data=fer2013"]  # the first stage, from scratch
WARM = ["experiment=fer2013_robust_warm"]  # the second, from the first stage's model
LICENCE = (
    "Weights trained on FER2013 (Goodfellow et al., 'Challenges in Representation Learning: A report on three machine "
    "learning contests', ICML 2013 workshop; distributed through Kaggle), whose images may be used for research only. "
    "These weights inherit that restriction: research and personal, non-commercial use. mimic's code is MIT."
)


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def train(data: Path, recipe: list[str], run_dir: Path) -> None:
    """Run ``recipe`` (train.py's overrides) into ``run_dir`` (a fresh folder)."""
    if run_dir.exists():
        raise UserError(f"{run_dir} exists; name a new folder (run=) so no earlier run is overwritten")
    cmd = [sys.executable, str(ROOT / "train.py"), *recipe, f"data.path={data}"]
    print("training:", " ".join(cmd), flush=True)
    subprocess.run([*cmd, f"hydra.run.dir={run_dir}"], check=True, cwd=ROOT)


def _recipe_command(run_dir: Path) -> tuple[str, int]:
    """The run's own command line (without data.path and hydra.*) and its seed, from Hydra's record of the run."""
    config = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    overrides = [
        o
        for o in OmegaConf.to_container(OmegaConf.load(run_dir / ".hydra" / "overrides.yaml"))
        if not o.startswith(("data.path=", "hydra.", "seed=", "ckpt_path="))
    ]
    seed = int(config.seed)
    return " ".join(["python train.py", *overrides, f"seed={seed}"]), seed


def _starting_models(config: dict) -> dict[str, list[dict]]:
    """The models a run started from (``init_from``) or was taught by (``data.teacher.ckpt``), each with its card's
    recipe, so that a model made from another one (``experiment=fer2013_robust_warm``: ``init_from=bundled``) names
    the whole chain. Read at packing time: ``bundled`` is then the model that the new one may replace. ``config`` is
    the run's unresolved Hydra config."""
    teacher = (config.get("data") or {}).get("teacher") or {}
    named = {"init_from": config.get("init_from"), "teacher": teacher.get("ckpt")}
    found = {}
    for key, value in named.items():
        values = [v for v in (value if isinstance(value, list) else [value]) if v]
        if values:
            found[key] = [_recipe_of(str(v), key) for v in values]
    return found


def _recipe_of(model: str, setting: str) -> dict:
    path, _ = resolve_checkpoint(model, setting)
    about = read_card(path)[0].about
    recipe = {k: about[k] for k in ("command", "seed", "commit") if isinstance(about.get(k), str | int)}
    test = about.get("test")
    if isinstance(test, dict) and isinstance(test.get("accuracy"), float):
        recipe["privatetest"] = test["accuracy"]
    return {"model": model, **recipe}


def slim(best: Path, about: dict) -> dict:
    """The checkpoint ``best`` (read through the safe path) cut to its card and fp16 weights, with ``about``."""
    card, ckpt = read_card(best)
    hp = {k: v for k, v in ckpt["hyper_parameters"].items() if k not in ("optimizer", "scheduler")}
    hp["about"] = about
    state = {k: v.half() if v.is_floating_point() and k != "temperature" else v for k, v in ckpt["state_dict"].items()}
    return {"hyper_parameters": hp, "state_dict": state, "mimic_version": __version__}


def evaluate(path: Path, data: Path, out: Path) -> dict:
    """Test ``path`` on PrivateTest with scripts/evaluate.py; returns its test_metrics.json."""
    cmd = [sys.executable, str(ROOT / "scripts" / "evaluate.py"), f"ckpt={path}", "data=fer2013", f"data.path={data}"]
    subprocess.run([*cmd, f"hydra.run.dir={out}"], check=True, cwd=ROOT)
    return json.loads((out / "test_metrics.json").read_text())


def pack(run_dir: Path, data: Path, dest: Path) -> dict:
    """Write the bundled model made from ``run_dir`` to ``dest``; returns its ``about``."""
    best = best_checkpoint(run_dir)
    if best is None:
        raise UserError(f"run={run_dir}: no checkpoints/best*.ckpt in it; is it a finished training run?")
    command, seed = _recipe_command(run_dir)
    run_metrics = json.loads((run_dir / "test_metrics.json").read_text())
    about = {
        "name": "mimic small_cnn, FER2013",
        "command": command,
        "seed": seed,
        "commit": _git_commit(),
        "mimic_version": __version__,
        "torch_version": str(torch.__version__),  # a TorchVersion, which weights_only refuses
        "data": "FER2013: trained on Training (28,709 faces), selected on PublicTest, tested on PrivateTest",
        "best_checkpoint": best.name,
        "licence": LICENCE,
        **({"logit_adjust": run_metrics["logit_adjust"]} if "logit_adjust" in run_metrics else {}),
        **_starting_models(OmegaConf.to_container(OmegaConf.load(run_dir / ".hydra" / "config.yaml"))),
    }
    with tempfile.TemporaryDirectory() as tmp:
        packed = Path(tmp) / BUNDLED_FILE
        torch.save(slim(best, about), packed)
        test = evaluate(packed, data, Path(tmp) / "evaluate")
    about["test"] = {
        "split": "PrivateTest",
        "n": test["n"],
        "accuracy": round(test["test/acc"], 4),
        "macro_f1": round(test["test/f1"], 4),
        "tta_flip": test["tta_flip"],
        "accuracy_fp32": round(run_metrics["test/acc"], 4),
    }
    atomic_write(dest, lambda f: torch.save(slim(best, about), f))
    write_bytes(licence_path(dest), licence_note(about).encode())
    return about


def licence_path(model: Path) -> Path:
    """The licence note that ships beside a bundled model: ``LICENSE.<its name>.txt``."""
    return model.with_name(f"LICENSE.{model.stem}.txt")


FROM = {"init_from": "from:    ", "teacher": "teacher: "}  # `_starting_models`' keys, as the note labels them


def _describe(model: dict) -> str:
    """One of `_starting_models`' entries on one line: the model as the run named it, then its own recipe."""
    made = [model["command"]] if "command" in model else []
    if "commit" in model:
        made.append(f"commit {model['commit']}")
    if "privatetest" in model:
        made.append(f"PrivateTest {model['privatetest']:.2%}")
    return f"{model['model']} ({'; '.join(made)})" if made else model["model"]


def licence_note(about: dict) -> str:
    """The text of `licence_path`: the weights' terms and how they were made (from the card's ``about``)."""
    test = about["test"]
    chain = "".join(f"  {label} {_describe(m)}\n" for key, label in FROM.items() for m in about.get(key, []))
    tau = (about.get("logit_adjust") or {}).get("tau")
    adjusted = f"  logits:   adjusted by -{tau:g} x log(each class's share of the training faces)\n" if tau else ""
    return (
        f"{about['name']}: {BUNDLED_FILE}\n\n"
        f"Terms of use of these weights\n"
        f"{LICENCE}\n\n"
        f"How they were made\n"
        f"  command:  {about['command']}\n"
        f"  seed:     {about['seed']}\n"
        f"{chain}"
        f"{adjusted}"
        f"  commit:   {about['commit']}  (mimic {about['mimic_version']}, torch {about['torch_version']})\n"
        f"  data:     {about['data']}\n"
        f"  result:   {test['accuracy']:.2%} accuracy on {test['split']} ({test['n']} faces, flip TTA "
        f"{'on' if test['tta_flip'] else 'off'}; fp32 weights before packing: {test['accuracy_fp32']:.2%}), macro-F1 "
        f"{test['macro_f1']:.3f}\n"
        f"  packed by scripts/make_bundled_model.py (weights stored as fp16, loaded as fp32)\n"
    )


KEYS = {
    "data": Key(Path, None, "FER2013 (fer2013.csv, .csv.gz or .tar.gz)", required=True),
    "train": Key(boolean, False, "train with the bundled model's recipe first"),
    "run": Key(Path, None, "a finished training run to pack (with train=true: the second stage's new folder)"),
    "seed": Key(int, 2, "the second stage's seed (the warm start)"),
    "base_seed": Key(int, 42, "the first stage's seed (the default recipe, from scratch)"),
    "out": Key(Path, ASSETS / BUNDLED_FILE, "where the packed model goes"),
    "force": Key(boolean, False, "replace an existing file at out"),
}


def main(argv: list[str] | None = None) -> None:
    """Train and/or pack as the command line (``key=value`` words; default: ``sys.argv``) says."""
    with user_errors():
        args = parse(argv, KEYS, __doc__)
        if args.out.exists() and not args.force:
            raise UserError(f"{args.out} exists; give force=true to replace it (or out= another path)")
        if not args.data.is_file():
            raise UserError(f"data={args.data}: no such file; give FER2013's fer2013.csv, .csv.gz or .tar.gz")
        run_dir = args.run
        if args.train:
            run_dir = (run_dir or ROOT / "outputs" / "train" / f"bundled_warm_seed{args.seed}").resolve()
            base = run_dir.with_name(f"{run_dir.name}_base_seed{args.base_seed}")
            train(args.data.resolve(), [*RECIPE, f"seed={args.base_seed}"], base)
            train(args.data.resolve(), [*WARM, f"seed={args.seed}", f"init_from={base}"], run_dir)
        if run_dir is None:
            raise UserError("name the run to pack with run=<folder>, or train one with train=true")
        about = pack(run_dir.resolve(), args.data.resolve(), args.out)
        size = args.out.stat().st_size / 1e6
        print(f"{args.out}: {size:.2f} MB, PrivateTest accuracy {about['test']['accuracy']:.4f} ({about['command']})")


if __name__ == "__main__":
    main()
