from __future__ import annotations

import sys

from furl_wrappers.cli import main

sys.exit(main())
