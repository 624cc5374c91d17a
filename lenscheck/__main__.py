"""``python -m lenscheck``."""

import sys

from lenscheck.cli import main

sys.exit(main())
