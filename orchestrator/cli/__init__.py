"""The `bluegreen` command line: the only package that knows about the terminal.

`app` holds the click group; one module per verb group (traffic, rollout, probes, campaign,
schedule, audit, lab) holds thin commands over the core; `render` draws results, `exit`
maps typed errors to exit codes, `context` loads the config for a command."""

from orchestrator.cli.app import main

__all__ = ["main"]
