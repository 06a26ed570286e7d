"""One table of a multirun's jobs: a sweep (`python train.py -m model=small_cnn,resnet18 seed=1,2`), an Optuna search
(`python train.py hparams_search=fer2013`) or either on a cluster (`hydra/launcher=submitit_slurm`).

    python scripts/sweep_report.py <sweep folder> [out=<file.csv>]

A row per job folder (``<sweep folder>/<n>/``): the overrides it ran with (``.hydra/overrides.yaml``), the validation
score its best checkpoint was selected on (``val/acc``), its test accuracy and that checkpoint (its newest
``test_metrics.json``); best validation score first, jobs without results (failed, still running) last. The rows go to
``<sweep folder>/sweep_report.csv`` (or ``out``; an existing file is kept and the new one numbered) and are printed, the
overrides every job shares once above the table. An Optuna search's best parameters and value
(``optimization_results.yaml``) are printed below it. Every file is read as plain YAML or JSON, never resolved or run.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from mimic.args import Key, parse
from mimic.cli import user_errors
from mimic.errors import UserError, said
from mimic.io import new_file, write_bytes

COLUMNS = ["job", "overrides", "monitor", "best_val", "test_acc", "checkpoint"]


def _read(path: Path, load) -> Any:
    try:
        return load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as e:
        raise UserError(f"{path}: not readable as {'JSON' if load is json.loads else 'YAML'} ({said(e)})") from None


def _newest_metrics(folder: Path) -> Path | None:
    """The job's newest test_metrics.json: a second run in a folder writes test_metrics-1.json (mimic.io.new_file)."""
    numbered = [
        (int(m.group(1) or 0), p)
        for p in folder.iterdir()
        if (m := re.fullmatch(r"test_metrics(?:-(\d+))?\.json", p.name))
    ]
    return max(numbered)[1] if numbered else None


def _number(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else None


def read_job(folder: Path) -> dict[str, Any]:
    """One job folder's row: job, overrides (a list of strings), monitor, best_val, test_acc, checkpoint."""
    overrides = _read(folder / ".hydra" / "overrides.yaml", yaml.safe_load) or []
    if not isinstance(overrides, list):
        raise UserError(
            f"{folder / '.hydra' / 'overrides.yaml'}: expected a list of overrides, found {overrides!r:.80}"
        )
    row: dict[str, Any] = {"job": folder.name, "overrides": [str(o) for o in overrides]}
    metrics_file = _newest_metrics(folder)
    metrics = _read(metrics_file, json.loads) if metrics_file else {}
    if not isinstance(metrics, dict):
        raise UserError(f"{metrics_file}: expected a JSON object of metrics")
    monitor = metrics.get("monitor") if isinstance(metrics.get("monitor"), str) else ""  # older runs name none
    row["monitor"] = monitor
    row["best_val"] = _number(metrics.get(monitor)) if monitor else None
    row["test_acc"] = _number(metrics.get("test/acc"))
    row["checkpoint"] = str(metrics.get("best_checkpoint") or "")
    return row


def read_sweep(sweep: Path) -> list[dict[str, Any]]:
    """Every job of ``sweep``, best validation score first."""
    if not sweep.is_dir():
        raise UserError(f"sweep folder not found: {sweep}")
    folders = [p.parent.parent for p in sweep.glob("*/.hydra/overrides.yaml")]
    if not folders:
        raise UserError(
            f"{sweep}: no job folders (<n>/.hydra/overrides.yaml) in it; name a multirun's folder, e.g. "
            "outputs/train/multiruns/<time>"
        )
    rows = [read_job(f) for f in folders]
    job_order = lambda r: (int(r["job"]) if r["job"].isdigit() else float("inf"), r["job"])  # noqa: E731
    return sorted(rows, key=lambda r: (r["best_val"] is None, -(r["best_val"] or 0.0), job_order(r)))


def _shown(value: Any) -> str:
    return "-" if value is None or value == "" else f"{value:.4f}" if isinstance(value, float) else str(value)


def _brief(override: str) -> str:
    """``key=value`` with a long number shortened to 4 significant digits (Optuna's draws): for the printed table."""
    key, eq, value = override.partition("=")
    if eq and re.fullmatch(r"-?\d+\.\d{5,}(e-?\d+)?", value):
        return f"{key}={float(value):.4g}"
    return override


def table(rows: list[dict[str, Any]], sweep: Path) -> str:
    """The printed report: the overrides every job shares, then a line per job with the overrides that vary."""
    shared = set.intersection(*(set(r["overrides"]) for r in rows))
    monitors = sorted({r["monitor"] for r in rows if r["monitor"]})
    lines = [f"{len(rows)} jobs in {sweep}", f"every job: {' '.join(o for o in rows[0]['overrides'] if o in shared)}"]
    root = sweep.resolve()

    def short(path: str) -> str:
        inside = path and Path(path).resolve().is_relative_to(root)
        return str(Path(path).resolve().relative_to(root)) if inside else path

    header = ["job", f"best {'/'.join(monitors) or 'val'}", "test/acc", "checkpoint", "overrides"]
    cells = [
        [r["job"], _shown(r["best_val"]), _shown(r["test_acc"]), short(r["checkpoint"]) or "- (no results)"]
        + [" ".join(_brief(o) for o in r["overrides"] if o not in shared)]
        for r in rows
    ]
    widths = [max(len(c[i]) for c in [header, *cells]) for i in range(len(header))]
    for c in [header, *cells]:
        lines.append("  ".join(v.rjust(w) if i in (1, 2) else v.ljust(w) for i, (v, w) in enumerate(zip(c, widths))))
    return "\n".join(line.rstrip() for line in lines)


def optuna_best(sweep: Path) -> str | None:
    """An Optuna search's best parameters and value, as Hydra's sweeper wrote them, or None for another sweep."""
    path = sweep / "optimization_results.yaml"
    if not path.is_file():
        return None
    found = _read(path, yaml.safe_load)
    if not isinstance(found, dict) or not isinstance(found.get("best_params"), dict):
        return f"{path}: no best parameters in it"
    params = " ".join(f"{k}={v}" for k, v in found["best_params"].items())
    return f"Optuna's best (optimization_results.yaml): value {_shown(_number(found.get('best_value')))} with {params}"


def write_csv(rows: list[dict[str, Any]], out: Path) -> Path:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow(
            {**r, "overrides": " ".join(r["overrides"]), **{k: _shown(r[k]) for k in ("best_val", "test_acc")}}
        )
    return write_bytes(out, text.getvalue().encode())


def report(sweep: Path, out: Path | None = None) -> Path:
    """Print the table of ``sweep`` and write it as CSV; returns the CSV's path."""
    rows = read_sweep(sweep)
    written = write_csv(rows, new_file(out or sweep / "sweep_report.csv", "out", "sweep_report.csv"))
    print(table(rows, sweep))
    if best := optuna_best(sweep):
        print(best)
    print(f"CSV: {written}")
    return written


KEYS = {
    "sweep": Key(
        Path,
        None,
        "the multirun's folder (outputs/<task>/multiruns/<time>); the first word may be just it",
        required=True,
    ),
    "out": Key(Path, None, "the CSV to write (default: <sweep>/sweep_report.csv)"),
}


def main(argv: list[str] | None = None) -> None:
    """Report as the command line says: ``<sweep folder>`` or ``sweep=<folder>``, and ``out=`` (default: sys.argv)."""
    with user_errors():
        words = list(sys.argv[1:] if argv is None else argv)
        if words and "=" not in words[0] and not words[0].startswith("-"):
            words[0] = f"sweep={words[0]}"
        args = parse(words, KEYS, __doc__)
        report(args.sweep, args.out)


if __name__ == "__main__":
    main()
