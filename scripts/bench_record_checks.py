"""What the record checks cost when a results folder is read: `find_experiments` on a folder with the schema checks
of every record (bnexp.records' models, the run configs by the config's own schema) and with them switched off,
alternating in one process; prints each repetition and the median of the ratios.

    python scripts/bench_record_checks.py results --reps 5
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from unittest import mock

from bnexp import records
from bnexp.results import find_experiments


def _unchecked(record, model, where):  # the record as the model without validating it (the cost left out)
    return model.model_construct(**record)


def load_seconds(folder: Path, checked: bool) -> float:
    start = time.perf_counter()
    if checked:
        find_experiments(folder)
    else:
        with (
            mock.patch.object(records, "read", _unchecked),
            mock.patch.object(records, "check", lambda record, model, where: record),
            mock.patch.object(records, "_schema", lambda cls, value, where: None),
        ):
            find_experiments(folder)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    load_seconds(args.folder, True)  # warm the file cache and the imports
    ratios = []
    for rep in range(args.reps):
        without, with_checks = load_seconds(args.folder, False), load_seconds(args.folder, True)
        ratios.append(with_checks / without)
        print(f"rep {rep + 1}: {without:.2f} s without the checks, {with_checks:.2f} s with them: {ratios[-1]:.2f}x")
    print(f"median ratio over {args.reps}: {statistics.median(ratios):.2f}x")


if __name__ == "__main__":
    main()
