import sys

from furl_wrappers.cli import main

sys.exit(main())
