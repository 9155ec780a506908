"""`bluegreen serve` (a read-only dashboard and JSON API, Starlette + uvicorn) and
`bluegreen metrics` (Prometheus). Import-free on purpose: `rollback` never loads any of it.

`snapshot` reads the store and the router (read-only), `refresher` keeps the newest
snapshot on one background thread, `metrics` turns a snapshot into Prometheus families,
`app` is the ASGI app (pages, API, /metrics, security headers, token), `server` checks the
address and the token and runs uvicorn.
"""
