"""Adopting bluegreen on an existing fleet: `bluegreen init` (a validated bluegreen.yml and
the adapted load balancer config from what is there already)."""
