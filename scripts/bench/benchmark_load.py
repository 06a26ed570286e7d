"""Time loading the real FER2013: cold parse of the .csv and the .csv.gz, then the cached load; print rows per split.

    python scripts/bench/benchmark_load.py [path=../shared/data/fer2013/fer2013.csv.gz] [ferplus=PATH]

Caches go to a temporary folder and the decompressed .csv to the system temp folder, both removed at the end.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
import time
from pathlib import Path

from mimic.args import Key, parse
from mimic.cli import user_errors
from mimic.data.fer2013 import FER2013Source

REPO = Path(__file__).resolve().parents[2]
KEYS = {
    "path": Key(Path, REPO.parent / "shared" / "data" / "fer2013" / "fer2013.csv.gz", "FER2013's .csv or .csv.gz"),
    "ferplus": Key(Path, REPO.parent / "shared" / "data" / "ferplus" / "fer2013new.csv", "FER+'s votes, if there"),
}


def timed_load(source: FER2013Source) -> tuple[dict, float, float]:
    """(splits, wall seconds, CPU seconds of this process: on a busy machine wall time is mostly waiting)."""
    wall, cpu = time.perf_counter(), time.process_time()
    splits = source.load()
    return splits, time.perf_counter() - wall, time.process_time() - cpu


def main(argv: list[str] | None = None) -> None:
    with user_errors():
        args = parse(argv, KEYS, __doc__)
    print(f"{os.cpu_count()} CPUs, load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")

    with tempfile.TemporaryDirectory(prefix="mimic-bench-") as tmp:
        tmp = Path(tmp)
        files = [args.path]
        if args.path.name.endswith(".gz") and not args.path.name.endswith(".tar.gz"):
            plain = tmp / args.path.name[: -len(".gz")]
            start = time.perf_counter()
            with gzip.open(args.path, "rb") as src, open(plain, "wb") as dst:
                shutil.copyfileobj(src, dst, 16 << 20)
            print(f"(decompressed to {plain} in {time.perf_counter() - start:.1f} s for the plain-CSV timing)")
            files.insert(0, plain)

        for i, f in enumerate(files):
            cache = tmp / f"cache{i}"
            splits, wall, cpu = timed_load(FER2013Source(f, cache_dir=cache))
            size = f.stat().st_size / 2**20
            print(f"cold parse  {f.name:<16} {size:6.0f} MiB  {wall:6.2f} s wall  {cpu:6.2f} s CPU  (+cache write)")
            _, wall, cpu = timed_load(FER2013Source(f, cache_dir=cache))
            print(f"cached load {f.name:<16} {'':11} {wall:6.2f} s wall  {cpu:6.2f} s CPU")
        print("rows per split: " + ", ".join(f"{k} {len(v)}" for k, v in splits.items()))

        if args.ferplus.is_file():
            plus, wall, cpu = timed_load(FER2013Source(f, labels="ferplus", ferplus_path=args.ferplus, cache_dir=cache))
            print(f"FER+ (cached images + votes) {wall:.2f} s wall  {cpu:.2f} s CPU")
            for k, v in plus.items():
                print(f"  FER+ {k}: {len(v)} rows kept, dropped {v.meta['dropped']}")


if __name__ == "__main__":
    main()
