"""``python -m gradflow`` is the ``gradflow`` command (see :mod:`gradflow.cli`)."""

import sys

from gradflow.cli import main

sys.exit(main())
