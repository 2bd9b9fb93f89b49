"""``python -m trainlab``: the command line (what local search workers are started with)."""

from trainlab.cli import main

main()
