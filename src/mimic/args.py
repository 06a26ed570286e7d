"""The one argument style of mimic's scripts: ``key=value`` words, as Hydra's overrides read on the Hydra commands.

A script declares its keys (`Key`: how to read the value, the default, a line of help) and calls `parse`. ``--help``
prints the script's docstring and its keys. A word that is not ``key=value``, an unknown key, a key given twice, a
missing required key or a value its type cannot read raises `UserError` naming it; inside `mimic.cli.user_errors` that
is one ``error: ...`` line and exit status 2, never a traceback.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from mimic.errors import UserError
from mimic.settings import show


def boolean(text: str) -> bool:
    """``true`` or ``false`` (any case)."""
    return {"true": True, "false": False}[text.lower()]


def _items(text: str) -> list[str]:
    return [t.strip() for t in text.strip().removeprefix("[").removesuffix("]").split(",") if t.strip()]


def strings(text: str) -> list[str]:
    """A comma-separated list, brackets optional: ``a,b`` or ``[a,b]``."""
    return _items(text)


def integers(text: str) -> list[int]:
    """A comma-separated list of whole numbers: ``1,2``."""
    return [int(t) for t in _items(text)]


def paths(text: str) -> list[Path]:
    """A comma-separated list of paths, ``~`` expanded (as a `Path` key's value is)."""
    return [Path(t).expanduser() for t in _items(text)]


def choice(*options: str) -> Callable[[str], str]:
    """One of ``options``."""

    def read(text: str) -> str:
        if text not in options:
            raise ValueError(text)
        return text

    read.__name__ = "|".join(options)
    return read


TYPE_NAMES = {
    int: "whole number",
    float: "number",
    str: "text",
    Path: "path",
    boolean: "true|false",
    strings: "a,b,...",
    integers: "1,2,...",
    paths: "path,path,...",
}


@dataclass(frozen=True)
class Key:
    """One ``key=value`` a script takes: ``type`` reads the text (raising on a bad one), ``default`` is used when the
    key is not given (a default of None also lets the user write ``key=null``), ``required``: it must be given."""

    type: Callable[[str], Any] = str
    default: Any = None
    help: str = ""
    required: bool = False

    @property
    def type_name(self) -> str:
        return TYPE_NAMES.get(self.type, getattr(self.type, "__name__", "value"))


def usage(keys: dict[str, Key], doc: str | None = None, extra_help: str = "") -> str:
    """The ``--help`` text: ``doc``, then a line per key (its type, default and help), then ``extra_help``."""
    rows = [(f"{name}=<{key.type_name}>", key) for name, key in keys.items()]
    width = max((len(r[0]) for r in rows), default=0) + 2
    lines = [(doc or "").strip(), "", "keys (key=value):"]
    for left, key in rows:
        default = " (required)" if key.required else f" (default: {show(key.default)})"
        lines.append(f"  {left:<{width}}{key.help}{'' if 'default' in key.help else default}")
    if extra_help:
        lines.append(f"  {extra_help}")
    return "\n".join(lines).strip()


def _not_key_value(word: str, keys: dict[str, Key]) -> str:
    """The error for a word without ``=``, suggesting the ``key=value`` the user probably meant."""
    name = word.lstrip("-").replace("-", "_")
    hint = ""
    if name in keys:
        hint = f": write {name}=true" if keys[name].type is boolean else f": write {name}=<{keys[name].type_name}>"
    elif name.startswith("no_") and name[3:] in keys and keys[name[3:]].type is boolean:
        hint = f": write {name[3:]}=false"
    return f"{word!r} is not key=value{hint} (--help lists the keys)"


def parse(
    argv: Sequence[str] | None,
    keys: dict[str, Key],
    doc: str | None = None,
    extra: str | None = None,
    extra_help: str = "",
) -> SimpleNamespace:
    """Read ``argv`` (default: the command line) as ``key=value`` words into a namespace with an attribute per key
    (dots in a key's name read as underscores: ``data.path`` is ``args.data_path``), the given value or the default.

    ``extra``: undeclared keys starting with this prefix ("" for any key) are not errors but kept, as given, in
    ``args.extra`` (for a script that passes them on, e.g. as Hydra overrides; ``extra_help`` says so in ``--help``).
    ``--help`` or ``-h`` prints `usage` and exits 0; anything wrong raises `UserError`."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(word in ("-h", "--help") for word in argv):
        print(usage(keys, doc, extra_help))
        sys.exit(0)
    given: dict[str, Any] = {}
    words: dict[str, str] = {}
    rest: list[str] = []
    for word in argv:
        key, eq, text = word.partition("=")
        if not eq or not key:
            raise UserError(_not_key_value(word, keys))
        if key not in keys:
            if extra is not None and key.lstrip("+~").startswith(extra):
                rest.append(word)
                continue
            known = ", ".join(keys) + (f", {extra_help}" if extra_help else "")
            raise UserError(f"unknown key {key!r} in {word!r}; the keys are {known} (--help says more)")
        if key in words:
            raise UserError(f"{key} is given twice ({words[key]!r} and {word!r}): give it once")
        words[key] = word
        spec = keys[key]
        if text == "null" and spec.default is None:
            given[key] = None
            continue
        try:
            given[key] = spec.type(text)
            if isinstance(given[key], Path):
                given[key] = given[key].expanduser()
        except (ValueError, KeyError, TypeError):
            raise UserError(f"{word}: expected {key}=<{spec.type_name}>") from None
    missing = [k for k, spec in keys.items() if spec.required and given.get(k) is None]
    if missing:
        needed = ", ".join(f"{k}=<{keys[k].type_name}> ({keys[k].help})" for k in missing)
        raise UserError(f"missing {needed} (--help says more)")
    values = {k.replace(".", "_"): given[k] if k in given else copy.copy(spec.default) for k, spec in keys.items()}
    return SimpleNamespace(**values, extra=rest)
