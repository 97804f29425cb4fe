"""`python -m ftdiag` runs the CLI (also under torchrun / accelerate launch -m ftdiag)."""

from ftdiag.cli import main

main()
