"""The `bluegreen` click group: global options, the table of verbs, the exit codes.

Every command is a thin function over the core: it parses arguments, calls one core
function, renders the typed result (text or `--json`) and maps typed errors to exit codes.
A verb's module is imported only when that verb runs (`VERBS`, a name -> module table as
testinfra's backends), and heavy modules (ansible, pytest, rich) only inside the commands
that need them, so `bluegreen --help` and `bluegreen rollback` start fast.
"""

from __future__ import annotations

import importlib
from typing import NamedTuple

import click

from orchestrator.cli.context import Ctx, witness_at_exit
from orchestrator.cli.exit import EXIT_CODES
from orchestrator.cli.render import guard_terminal


class Verb(NamedTuple):
    module: str
    """orchestrator.cli.MODULE holds the click command or group..."""
    attribute: str
    """...under this name."""
    summary: str
    """The first sentence of its help, for `bluegreen --help` without importing it (a
    unit test keeps it equal to the command's own)."""


VERBS: dict[str, Verb] = {
    "audit": Verb("audit", "audit", "The tamper-evident audit chain."),
    "baseline": Verb("probes", "baseline",
                     "An approved fingerprint of a service's hosts, kept next to the config."),
    "campaign": Verb("campaign", "campaign",
                     "Patch campaigns: advisories applied to many services in waves, inside a "
                     "maintenance window, with approvals; resumable (also after kill -9) and "
                     "abortable."),
    "doctor": Verb("doctor", "doctor", "Check everything a first rollout depends on (SSH to "
                   "every host as the probes and Ansible connect, sudo, root, the load "
                   "balancer's socket level, map, backends, server state and confirm header, "
                   "health URLs, audit witness, state store), each with one fix line; exit 1 "
                   "when a check fails."),
    "drift": Verb("probes", "drift", "Compare SERVICE's sides: packages, enabled and running "
                  "units, listening ports, file hashes, and the security fingerprint "
                  "(authorized keys, users, sudoers, setuid files, cron, timers, listeners, "
                  "sshd and PAM config)."),
    "exposure": Verb("advisories", "exposure",
                     "Open CVEs per service, side and host: package, installed and fixed "
                     "version, urgency, whether the configured repositories offer the fix."),
    "flip": Verb("traffic", "flip",
                 "Manually move SERVICE's traffic to a side: it must be verified at its current "
                 "patch level (or be the side that was live before the last flip), its hosts "
                 "must still be the ones that were verified (one SSH round trip), and router "
                 "and state must agree."),
    "history": Verb("audit", "history",
                    "The audit trail: who changed what, when, why, and the result."),
    "init": Verb("init", "init", "Write a first bluegreen.yml from your inventory and your "
                 "load balancer's config."),
    "lab": Verb("lab", "lab",
                "The local lab: real Debian hosts (systemd-nspawn + sshd), HAProxy and an apt "
                "repository on this machine, for the demo and the integration tests."),
    "metrics": Verb("web", "metrics_cmd", "The /metrics of `serve`, read once: live side, "
                    "flips, rollbacks, verifications, campaigns, audit chain."),
    "plan": Verb("rollout", "plan", "What `rollout SERVICE` would do: hosts, package changes "
                 "(Ansible check mode) and router commands."),
    "rebuild": Verb("security", "rebuild", "Rebuild a side that is not live instead of "
                    "repairing it: run the service's patch.rebuild_playbook on it (re-image, "
                    "redeploy), then the full verification gate; only a pass makes it verified "
                    "again (how a quarantined side returns)."),
    "report": Verb("campaign", "report_cmd",
                   "Write the evidence of a campaign's newest run (or of a run id): advisories, "
                   "versions before/after per host, probe results, approvals, flips, rollbacks, "
                   "audit head hash, and each advisory's CVEs per host before, after and NOW "
                   "(the hosts are read, both sides)."),
    "resume": Verb("rollout", "resume", "Continue a run that was interrupted (even by kill -9) "
                   "from its last finished step."),
    "quarantine": Verb("security", "quarantine", "Take a side out of service: if it is live, "
                       "flip to the other side first (only if that side is verified and its "
                       "hosts are the verified ones), then mark it quarantined: never a flip "
                       "target again until it is patched (rebuilt) and verified."),
    "rollback": Verb("traffic", "rollback", "Send SERVICE's traffic back to the side that was "
                     "live before its last flip, now."),
    "rollout": Verb("rollout", "rollout",
                    "Patch SERVICE's standby side, verify it, flip traffic to it, bake, done."),
    "schedule": Verb("schedule", "schedule", "Start campaigns at their maintenance window with "
                     "systemd timers (or cron)."),
    "serve": Verb("web", "serve_cmd", "A read-only dashboard, JSON API (/api/v1/...) and "
                  "/metrics; changes nothing."),
    "state": Verb("state", "state", "The state store: schema migrations, and copying a store "
                  "to another backend."),
    "status": Verb("traffic", "status",
                   "Live side (from the router), standby, patch level and verification of each "
                   "side, and what the load balancer counted for each side since it started "
                   "(responses, 5xx)."),
    "unlock": Verb("traffic", "unlock", "Free SERVICE's run lock when its holder is gone (audited)."),
    "verify": Verb("probes", "verify", "Run the verification gate on a side: checks, suites and "
                   "drift, a table host x check; exit 3 on any failure."),
    "watch": Verb("security", "watch", "Compare the live side's hosts with the approved "
                  "baseline (security fingerprint included), every --interval seconds until "
                  "stopped; a deviation is reported by exit code 3, an audit record, the "
                  "webhook event `deviation` and /metrics."),
    "worker": Verb("worker", "worker", "Run campaigns' services of one site, handed out by "
                   "`campaign run --workers` through the shared PostgreSQL store, until "
                   "SIGTERM: claim, patch, verify, flip, bake, record."),
}


class LazyGroup(click.Group):
    """A group whose verbs are imported when they run, from `VERBS`."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(VERBS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        verb = VERBS.get(cmd_name)
        if verb is None:
            return None
        command = getattr(importlib.import_module(f"orchestrator.cli.{verb.module}"),
                          verb.attribute)
        assert isinstance(command, click.Command), verb
        return command

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else ""
        # click suggests close names from the commands it holds: here, from the table
        no_such = getattr(click.exceptions, "NoSuchCommand", None)  # click >= 8.4
        if name[:1].isalnum() and name not in VERBS and no_such and not ctx.resilient_parsing:
            raise no_such(name, possibilities=sorted(VERBS), ctx=ctx)
        return super().resolve_command(ctx, args)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """As click's, from the summaries in `VERBS` instead of the imported commands."""
        limit = formatter.width - 6 - max(len(name) for name in VERBS)
        rows = [(name, click.Command(name, help=VERBS[name].summary).get_short_help_str(limit))
                for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=EXIT_CODES,
)
@click.option(
    "-c",
    "--config",
    "config",
    metavar="FILE",
    envvar="BLUEGREEN_CONFIG",
    help="bluegreen.yml to use (env BLUEGREEN_CONFIG; default ./bluegreen.yml).",
)
@click.option(
    "--actor", metavar="NAME", help="Who is acting, for the audit chain (default: OS user)."
)
@click.version_option(package_name="bluegreen")
@click.pass_context
def main(ctx: click.Context, config: str | None, actor: str | None) -> None:
    """Blue-green patch rollouts: patch the standby side, prove it healthy and secured,
    flip traffic to it at the load balancer, watch it, and keep the old side warm so that
    rollback is one instant flip.

    \b
    Start here:
      bluegreen lab up                 a local fleet to try it on (root)
      bluegreen -c /var/lib/bluegreen-lab/bluegreen.yml status
      bluegreen rollout web            patch web's standby, verify, flip, bake
      bluegreen rollback web --reason INC-4711
    """
    guard_terminal()  # before anything prints: host and feed text shown, never obeyed
    ctx.obj = Ctx(config, actor)
    ctx.call_on_close(lambda: witness_at_exit(ctx.obj))

