"""Summarise a scripts/mutate run: counts per file and the diff of every mutant left alive.

Run by ``scripts/mutate --report TARGET`` inside the target's scratch copy (mutmut reads
its configuration and results from the current directory). Prints one line per file
(killed or timed out, of all), the total score, and, unless ``--counts``, a unified diff for each
mutant that survived or has no test. ``--names`` prints only the survivors' names.
"""

from __future__ import annotations

import sys
from collections import Counter

from mutmut.mutation.data import SourceFileMutationData
from mutmut.mutation.diff_apply import get_diff_for_mutant
from mutmut.stats import status_by_exit_code
from mutmut.utils.file_utils import walk_mutatable_files


def main(argv: list[str]) -> int:
    counts_only = "--counts" in argv
    names_only = "--names" in argv
    total: Counter[str] = Counter()
    alive: list[tuple[str, str, str]] = []
    for path in walk_mutatable_files():
        data = SourceFileMutationData(path=path)
        data.load()
        here = Counter(status_by_exit_code[code] for code in data.exit_code_by_key.values())
        if not here:
            continue
        total += here
        caught = here["killed"] + here["timeout"]
        if not names_only:
            print(f"{path}: {caught}/{sum(here.values())} killed or timed out  {dict(here)}")
        for name, code in data.exit_code_by_key.items():
            status = status_by_exit_code[code]
            if status not in ("killed", "timeout"):
                alive.append((name, status, str(path)))
    mutants = sum(total.values())
    detected = total["killed"] + total["timeout"]  # a mutant that hangs the tests is caught
    score = 100 * detected / mutants if mutants else 0.0
    if names_only:
        print(" ".join(name for name, status, _ in alive if status in ("survived", "no tests")))
        return 0
    print(f"TOTAL: {detected}/{mutants} killed or timed out ({score:.1f}%)  {dict(total)}")
    if not counts_only:
        for name, status, where in alive:
            print(f"\n# {name}: {status}")
            print(get_diff_for_mutant(name, path=where))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
