"""The HAProxy driver: `settings` (what bluegreen.yml says), `router` (map-based routing
through the runtime API), `transport` (unix or TCP socket, or SSH to a remote balancer)."""
