"""``python -m pyrozoo ...``: the same command line as the ``pyrozoo`` script."""

import sys

from pyrozoo.cli import main

sys.exit(main())
