"""Security advisories: which CVEs affect which Debian source package versions, from real
sources, and which hosts are exposed.

One module per source (`tracker` the Debian Security Tracker JSON, `osv` OSV records for
the Debian and Ubuntu ecosystems, `changelog` the changelogs of the candidate packages in
apt repositories), `fetch` (file or URL, cached, with limits), `versions` (Debian's rules),
`exposure` (the join with what a host has installed), `catalog` (the configured feeds
loaded once). No click or rich here: the CLI renders what these return.
"""
