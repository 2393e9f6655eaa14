"""`python -m vptune` (and `torchrun -m vptune`) run the CLI."""

import sys

from .cli.main import main

sys.exit(main())
