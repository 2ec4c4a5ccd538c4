"""Print the README's two set-up commands, one per line: the main job, then the tests.

They are the command lines of the first ``bash`` block under the heading "The two commands"
(comment lines left out). CI runs them from here, so the README and CI cannot drift apart.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

HEADING = "## The two commands"


def readme_commands(text: str) -> list[str]:
    """The command lines of the first ```bash block after :data:`HEADING`; exactly two, or ``ValueError``."""
    _, found, after = text.partition(HEADING)
    block = re.search(r"```bash\n(.*?)```", after, re.DOTALL)
    if not found or block is None:
        raise ValueError(f"the README has no ```bash block under {HEADING!r}")
    commands = [line.strip() for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]
    if len(commands) != 2:
        raise ValueError(f"the README's block under {HEADING!r} must hold two commands, got {commands}")
    return commands


if __name__ == "__main__":
    print("\n".join(readme_commands(Path(sys.argv[1]).read_text())))
