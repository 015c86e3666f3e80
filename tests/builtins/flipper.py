"""Flips PATH between a regular file and a symlink to TARGET, FLIPS times at most, printing
"ready" once it runs; a separate process, so the flips race the queries in parallel.

Usage: python -m tests.builtins.flipper PATH TARGET FLIPS
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(path: Path, target: Path, flips: int) -> None:
    """Flip until `flips` flips are done (or the test ends this process)."""
    hold = path.with_name(path.name + ".hold")
    link = path.with_name(path.name + ".link")
    print("ready", flush=True)
    for _ in range(flips // 2):
        link.symlink_to(target)
        path.rename(hold)
        link.replace(path)  # a symlink to the target now
        hold.replace(path)  # and the regular file again


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]))
