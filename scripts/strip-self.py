"""Print a pip-compile output without the project's own line (``pulling-agent @ file:///…``,
which the dev extra's self-reference adds: a machine's path, and nothing to hash) and the
warning about it. Used by ``make lock``."""

import sys
from pathlib import Path

lines = Path(sys.argv[1]).read_text().splitlines()
out: list[str] = []
skipping = False
for line in lines:
    if line.startswith("# WARNING: pip install will require the following package to be hashed"):
        skipping = True
        continue
    if skipping and (line.startswith(("#", "pulling-agent @", "    # via pulling-agent"))):
        continue
    skipping = False
    out.append(line)
if any("file://" in line for line in out):
    sys.exit("strip-self: a local path is still in the lock")
print("\n".join(out))
