"""`python -m geoposenet` (also what torchrun launches) runs the command line."""

import sys

from geoposenet.cli import main

sys.exit(main())
