"""No module of loadkit/ over 400 lines (run by .ci/run before the tests).

Why: a module is the unit a newcomer reads whole; past a few hundred lines it
holds more than one job, and the job it should be split by is easier to see
while it is still small. Every line counts (docstrings, comments and blank
lines are read too).

Prints each module over the limit with its length, longest first; exits 1 if
there is one, 0 otherwise.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "loadkit"
LIMIT = 400


def lengths(package: Path) -> dict[Path, int]:
    """Lines of each ``.py`` file under ``package``, by path relative to the repository."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        with path.open("rb") as f:
            out[path.relative_to(ROOT)] = sum(1 for _ in f)
    return out


def main() -> int:
    sizes = lengths(PACKAGE)
    over = sorted(((n, p) for p, n in sizes.items() if n > LIMIT), key=lambda item: (-item[0], str(item[1])))
    for n, path in over:
        print(f"{path}: {n} lines (limit {LIMIT}): split it by job")
    if over:
        print(f"{len(over)} module(s) over {LIMIT} lines")
        return 1
    print(f"all {len(sizes)} modules of loadkit/ have at most {LIMIT} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
