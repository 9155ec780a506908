"""Security advisories: which CVEs affect which Debian source package versions, from real
sources, and which hosts are exposed.

One module per source (`tracker` the Debian Security Tracker JSON, `osv` OSV records for
the Debian and Ubuntu ecosystems, `changelog` the changelogs of the candidate packages in
apt repositories, read by `debchangelog` with bounded memory), `repository` (the indexes)
and `release` (their signed Release: gpgv, hashes), `fetch` (file or URL, cached, with
limits), `decompress` (streamed, capped by the decompressed size), `versions` (Debian's rules),
`exposure` (the join with what a host has installed), `catalog` (the configured feeds
loaded once). No click or rich here: the CLI renders what these return.
"""
