"""`python -m longlab.parallel.run ...` (and `torchrun ... -m longlab.parallel.run ...`): see `cli.py`."""
import sys

from .cli import cli

if __name__ == "__main__":
    sys.exit(cli())
