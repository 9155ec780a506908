"""Patch campaigns: advisories applied to many services in waves, inside a maintenance
window, with approvals, deferral, resume, converge, webhooks and evidence reports.

Import-free. `model` (the campaign file), `waves`, `journal` (typed step keys and
outcomes), `state` (each service's status, conflicts), `events` (progress, result, lock name),
`runner` (CampaignRunner: start, resume, one run's life), `scheduler` (the waves),
`child` (one service's child rollout), `context` (what they share), `plan`,
`ops` (status, approve, abort), `converge`, `report` (a run's evidence, built from the
store: `orchestrator.evidence` renders it). Webhooks: `orchestrator.notify`.
"""
