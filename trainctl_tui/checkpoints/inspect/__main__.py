"""`python3 -m trainctl_tui.checkpoints.inspect PATH [--json] [--deep]`."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
