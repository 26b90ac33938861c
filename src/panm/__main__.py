"""`python -m panm ...` (used by `torchrun -m panm train ...`)."""

import sys

from panm.cli import main

sys.exit(main())
