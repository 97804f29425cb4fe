"""`python -m ftdiag` runs the CLI (also under torchrun / accelerate launch -m ftdiag)."""

from ftdiag.cli.app import main

main()
