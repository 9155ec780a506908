"""Wave scheduling of a campaign run: its waves in order, each in batches of
`max_parallel` services patched at the same time, gated by the maintenance window (or
waiting for it) and manual approval; progress reported; a wave's failures handled as its
`on_failure` says; the rest deferred when the window closes. Each service itself is
`campaign.child`'s job."""

from __future__ import annotations

import threading

from orchestrator.campaign.child import ChildRuns
from orchestrator.campaign.context import RunContext
from orchestrator.campaign.events import AWAITING, CampaignResult, window_note
from orchestrator.campaign.journal import APPROVAL, DEFERRED, Journal, Outcome, ServiceOutcome, Step
from orchestrator.campaign.model import Campaign, campaign_from_dict
from orchestrator.errors import OutsideWindow
from orchestrator.schedule.window import window_state
from orchestrator.state.models import Run


class WaveScheduler:
    def __init__(self, ctx: RunContext, children: ChildRuns, *, hosts_total: int,
                 wait_for_window: bool, stop: threading.Event) -> None:
        self.ctx = ctx
        self.children = children
        self.wait_for_window = wait_for_window
        self._stop = stop
        self._awaiting = False
        self._hosts_total = hosts_total

    def run_waves(
        self, run: Run, campaign: Campaign, waves: list[list[str]], result: CampaignResult
    ) -> None:
        """Every service of `waves` not ended yet; `result` says how the run ended if it
        did (still "running": all of them went through)."""
        ctx = self.ctx
        ends = Journal(ctx.store, run.run_id).ended()
        if campaign.approval.mode == "manual" and campaign.approval.at == "before_patch":
            if not self._approved(run):
                return self._await_approval(run, campaign, result)
        done = sum(1 for w in waves for s in w if Step.of_service(s) in ends)
        total = sum(len(w) for w in waves)
        first_failure: int | None = None
        for wi, names in enumerate(waves):
            wave = campaign.waves[wi]
            ctx.emit(
                "wave",
                f"wave {wi + 1}/{len(waves)}: {', '.join(names)} "
                f"(max_parallel={wave.max_parallel}, on_failure={wave.on_failure})",
                {"wave": wi + 1, "waves": len(waves), "services": names},
            )
            todo = [(si, svc) for si, svc in enumerate(names) if Step.of_service(svc) not in ends]
            for start in range(0, len(todo), wave.max_parallel):
                batch = todo[start : start + wave.max_parallel]
                later = [s for w in waves[wi:] for s in w][batch[-1][0] + 1 :]
                ctx.check_not_aborted(run.run_id)
                if not self._window_open(run, campaign):
                    rest = [svc for _, svc in batch] + later
                    return self._defer(run, rest, "the maintenance window is closed", result)
                for i, (_, svc) in enumerate(batch):
                    ctx.emit("service", f"{svc}: start ({done + i + 1}/{total})",
                             {"service": svc})
                outcomes = self._run_batch(run, campaign, [svc for _, svc in batch], wi)
                deferred = [svc for _, svc in batch if outcomes[svc].outcome is Outcome.DEFERRED]
                failed: list[str] = []
                for si, svc in batch:
                    outcome = outcomes[svc]
                    if outcome.outcome is Outcome.DEFERRED:
                        continue
                    done += 1
                    hosts_done = self.children.hosts_done(run.run_id)
                    waves_done = wi + (1 if si == len(names) - 1 else 0)
                    ctx.emit(
                        "progress",
                        f"services {done}/{total}, waves {waves_done}/{len(waves)}, "
                        f"hosts {hosts_done}/{self._hosts_total} done",
                        {
                            "services_done": done,
                            "services": total,
                            "waves_done": waves_done,
                            "waves": len(waves),
                            "hosts_done": hosts_done,
                            "hosts": self._hosts_total,
                        },
                    )
                    if outcome.is_failure:
                        first_failure = first_failure or outcome.exit_code
                        failed.append(f"{svc} {outcome}")
                # a failure outranks a deferral: the run must not end without reporting it
                if failed and wave.on_failure == "stop" and first_failure is not None:
                    msg = (f"campaign {campaign.name}: {', '.join(failed)}; stopping "
                           "(on_failure: stop)")
                    return ctx.fail(run.run_id, msg, first_failure, result)
                if deferred:
                    if self._awaiting:
                        return self._await_approval(run, campaign, result)
                    return self._defer(run, deferred + later,
                                       "the window closed before the flip", result)
        if first_failure is not None:
            msg = f"campaign {campaign.name}: finished with failures (on_failure: continue)"
            return ctx.fail(run.run_id, msg, first_failure, result)
        return None

    def _run_batch(
        self, run: Run, campaign: Campaign, services: list[str], wave: int
    ) -> dict[str, ServiceOutcome]:
        """Outcomes of `services`, patched at the same time (one service: in this thread).
        Each worker has its own state store connection and router; all of them finish
        before this returns, also when one raises (the first error is raised then)."""
        self._awaiting = False  # set by `_may_flip` of any service of the batch
        if len(services) == 1:
            return {services[0]: self._service(run, campaign, services[0], wave)}
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=len(services),
                                thread_name_prefix="campaign") as pool:
            futures = {svc: pool.submit(self._service_in_worker, run, campaign, svc, wave)
                       for svc in services}
        return {svc: f.result() for svc, f in futures.items()}

    def _service_in_worker(
        self, run: Run, campaign: Campaign, svc: str, wave: int
    ) -> ServiceOutcome:
        with self.ctx.worker():
            return self._service(run, campaign, svc, wave)

    def _service(self, run: Run, campaign: Campaign, svc: str, wave: int) -> ServiceOutcome:
        return self.children.service(run, campaign, svc, wave,
                                     lambda s: self._may_flip(run, campaign, s))

    # ---- approvals, windows, deferral ----------------------------------------------------
    def _may_flip(self, run: Run, campaign: Campaign, service: str) -> str | None:
        if campaign.approval.mode == "manual" and campaign.approval.at == "before_flip":
            if not self._approved(run):
                self._awaiting = True
                return f"awaiting manual approval (`bluegreen campaign approve {campaign.name}`)"
        state = window_state(campaign.window, self.ctx.clock())
        return None if state.open else state.reason

    def _approved(self, run: Run) -> bool:
        return APPROVAL in Journal(self.ctx.store, run.run_id).ended()

    def _await_approval(self, run: Run, campaign: Campaign, result: CampaignResult) -> None:
        journal = Journal(self.ctx.store, run.run_id)
        if APPROVAL not in journal.begun():
            journal.begin(APPROVAL, {"at": campaign.approval.at})
        msg = (
            f"campaign {campaign.name}: awaiting approval ({campaign.approval.at}); "
            f"`bluegreen campaign approve {campaign.name}` then `campaign resume {campaign.name}`"
        )
        self.ctx.store.finish_run(run.run_id, "deferred", "awaiting approval")
        result.status, result.message, result.exit_code = AWAITING, msg, 0

    def _window_open(self, run: Run, campaign: Campaign) -> bool:
        ctx = self.ctx
        while True:
            state = window_state(campaign.window, ctx.clock())
            if state.open:
                return True
            if not self.wait_for_window or state.next_open is None:
                return False
            wait = (state.next_open - ctx.clock()).total_seconds()
            ctx.emit("info", f"window closed; waiting until {state.next_open.isoformat()}")
            self._stop.wait(max(1.0, min(wait, 30.0)))
            ctx.check_not_aborted(run.run_id)

    def _defer(self, run: Run, rest: list[str], why: str, result: CampaignResult) -> None:
        ctx = self.ctx
        journal = Journal(ctx.store, run.run_id)
        journal.begin(DEFERRED, {"services": rest, "reason": why})
        journal.end(DEFERRED, {"services": rest, "reason": why})
        later = window_state(campaign_from_dict(run.params["campaign"], "campaign run")
                             .window, ctx.clock())
        msg = f"deferred: {why}; not flipped: {', '.join(rest)}; {window_note(later)}"
        ctx.store.finish_run(run.run_id, "deferred", msg)
        ctx.notifier.send("deferred", services=rest, reason=why)
        result.status, result.message, result.exit_code = "deferred", msg, OutsideWindow.exit_code
