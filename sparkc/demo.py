"""`python -m sparkc.demo`: the project's main job, README's first command.

The demo itself lives in `sparkc/tools/demo.py` (with the other tools, apart from the core
pipeline); this module keeps the documented command at its name.
"""

from __future__ import annotations

import sys

from .tools.demo import main

if __name__ == "__main__":
    sys.exit(main())
