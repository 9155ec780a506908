"""`python -m orchestrator` runs the bluegreen CLI."""

from orchestrator.cli.app import main

main()
