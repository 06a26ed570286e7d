"""Merge several class-folder datasets (capture days, people) into one, without touching the inputs.

    python scripts/merge_datasets.py out=OUT inputs=IN[,IN ...] [rename=smile=happy[,old=new ...]]
                                     [drop=angry[,...]] [classes=happy,sad,neutral] [dry_run=true]

Class names are matched after `mimic.labels.canonical` (``Happiness`` is ``happy``) and ``rename``. OUT gets one
``<index>_<name>/`` folder per class, in ``classes`` order or else in order of first appearance, with the files
copied byte for byte and numbered ``0000.jpg``, ``0001.png``, ... Exact duplicates (same content hash) are kept once,
the first copy wins. Files that do not decode as images (broken, zero bytes) and files of other formats are not
copied and are listed. Per-class counts are printed before and after, and ``OUT/merge_manifest.csv`` records where
every file came from. OUT must be new or empty; inputs are only read. ``--help`` lists the keys.
"""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path

from mimic.args import Key, boolean, parse, paths, strings
from mimic.cli import user_errors
from mimic.data.class_folders import list_files, read_image, scan_class_folders
from mimic.errors import UserError
from mimic.io import write_bytes
from mimic.labels import canonical


def _pairs(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        old, sep, new = item.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise UserError(f"rename: {item!r}: write it as old=new, e.g. rename=smile=happy")
        out[canonical(old)] = canonical(new)
    return out


def _inside(a: Path, b: Path) -> bool:
    return a == b or b in a.parents


def _table(header: list[str], rows: list[list]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: (
        "  "
        + "  ".join(
            str(v).ljust(w) if i == 0 else str(v).rjust(w)  # noqa: E731
            for i, (v, w) in enumerate(zip(r, widths, strict=True))
        )
    )
    return "\n".join([line(header), *map(line, rows)])


def merge(
    out: Path,
    inputs: list[Path],
    rename: dict[str, str],
    drop: set[str],
    classes: list[str] | None,
    dry_run: bool = False,
) -> dict[str, int]:
    """Merge ``inputs`` into ``out``; returns {class: images written}. See the module docstring."""
    out = out.expanduser().resolve()
    roots = [p.expanduser().resolve() for p in inputs]
    for root in roots:
        if not root.is_dir():
            raise UserError(f"input {root} is not a folder")
        if _inside(out, root) or _inside(root, out):
            raise UserError(f"out={out} overlaps input {root}: write the merge to a new folder")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"out={out} exists and is not empty: choose a new folder (inputs are never modified)")

    found: dict[str, list[tuple[Path, Path]]] = {}  # class -> [(input root, file)]
    before: dict[str, dict[Path, int]] = {}
    not_read: list[Path] = []
    for root in roots:
        if (root / "train").is_dir():
            raise UserError(
                f"input {root} is split into train/ (test/, val/): merge {root / 'train'} and the other "
                f"splits separately, each into its own output"
            )
        for folder in scan_class_folders(root):
            name = rename.get(folder.name, folder.name)
            files, others = list_files(folder.path)
            not_read += others
            before.setdefault(name, {})[root] = before.get(name, {}).get(root, 0) + len(files)
            found.setdefault(name, []).extend((root, f) for f in files)
    order = [canonical(c) for c in classes] if classes else list(found)
    dropped = sorted(set(found) - set(order) | (set(found) & drop))
    order = [c for c in order if c not in drop]
    missing = [c for c in order if c not in found]
    if missing:
        raise UserError(f"classes= names {missing}, which no input has (classes found: {list(found)})")

    names = [r.name if [x.name for x in roots].count(r.name) == 1 else str(r) for r in roots]
    print("before:")
    print(_table(["class", *names], [[c, *(before[c].get(r, 0) for r in roots)] for c in found]))
    if dropped:
        print(f"dropped classes: {', '.join(dropped)}")

    seen: dict[str, tuple[str, Path]] = {}
    written: dict[str, int] = {}
    duplicates: dict[str, int] = {}
    conflicts: list[str] = []
    broken: list[Path] = []
    manifest: list[list[str]] = []
    for index, name in enumerate(order):
        folder = out / f"{index}_{name}"
        if not dry_run:
            folder.mkdir(parents=True, exist_ok=True)
        written[name], duplicates[name] = 0, 0
        for _root, file in found[name]:
            data = file.read_bytes()
            if read_image(data) is None:
                broken.append(file)
                continue
            digest = hashlib.sha256(data).hexdigest()
            if digest in seen:
                duplicates[name] += 1
                if seen[digest][0] != name:
                    conflicts.append(f"{file} (class {name}) = {seen[digest][1]} (class {seen[digest][0]})")
                continue
            seen[digest] = (name, file)
            target = folder / f"{written[name]:04d}{file.suffix.lower()}"
            if not dry_run:
                write_bytes(target, data)
            manifest.append([str(target.relative_to(out)), str(file), digest])
            written[name] += 1
    if not dry_run:
        text = io.StringIO()
        csv.writer(text).writerows([["file", "source", "sha256"], *manifest])
        write_bytes(out / "merge_manifest.csv", text.getvalue().encode())
    print(f"after ({'dry run, nothing written' if dry_run else out}):")
    print(
        _table(
            ["class", "images", "duplicates dropped"],
            [[f"{i}_{c}", written[c], duplicates[c]] for i, c in enumerate(order)],
        )
    )
    for what, files in (("broken images (they do not decode)", broken), ("files mimic does not read", not_read)):
        if files:
            print(f"{len(files)} {what}, not copied:")
            for f in files:
                print(f"  {f}")
    if conflicts:
        print(f"{len(conflicts)} photos were in two classes; the first copy's class was kept:")
        for c in conflicts[:20]:
            print(f"  {c}")
    return written


KEYS = {
    "out": Key(Path, None, "a new folder for the merged dataset", required=True),
    "inputs": Key(paths, None, "the class-folder datasets to merge, comma-separated", required=True),
    "rename": Key(strings, [], "classes to rename, old=new, comma-separated"),
    "drop": Key(strings, [], "classes to leave out, comma-separated"),
    "classes": Key(strings, None, "the class order of the output (others are left out; default: as found)"),
    "dry_run": Key(boolean, False, "print the counts, write nothing"),
}


def main(argv: list[str] | None = None) -> None:
    """Merge as the command line (``key=value`` words; default: ``sys.argv``) says."""
    with user_errors():
        args = parse(argv, KEYS, __doc__)
        merge(args.out, args.inputs, _pairs(args.rename), {canonical(d) for d in args.drop}, args.classes, args.dry_run)


if __name__ == "__main__":
    main()
