"""Canary analysis for the bake: metric sources (Prometheus's HTTP API, the load balancer's
own counters) and the judge that compares the patched side with its warm twin measured over
the same window. Three verdicts: pass, fail, inconclusive; no data never passes."""
