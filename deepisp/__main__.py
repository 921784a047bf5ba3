"""`python -m deepisp ...`: the `deepisp` command, for environments without the installed script (and for
`python -m cProfile -m deepisp`, `torchrun -m deepisp`)."""

import sys

from deepisp.cli import main

sys.exit(main())
