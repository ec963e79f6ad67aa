"""Run the demo race: ``python -m gradflow``."""

import sys

from gradflow.demo import main

sys.exit(main())
