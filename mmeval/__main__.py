"""``python -m mmeval``: the command line (also ``torchrun -m mmeval run ...``)."""

from mmeval.cli import main

main()
