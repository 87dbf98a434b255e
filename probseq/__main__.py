"""``python -m probseq ...`` (and ``torchrun --nproc_per_node=N -m probseq ...``): the ``probseq`` command."""

import sys

from probseq.cli import main

if __name__ == "__main__":
    sys.exit(main())
