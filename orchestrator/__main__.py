"""`python -m orchestrator` runs the bluegreen CLI."""

from orchestrator.cli import main

main()
