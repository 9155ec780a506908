"""The evidence of a campaign run: what auditors are given, in one place.

Import-free. `model` (the report, typed; `campaign.report.build_report` builds it from the
state store), `render` (JSON, Markdown, and the dispatch to HTML and OpenVEX; writing a
report file), `report_html` + templates/ (one self-contained HTML file), `openvex` (the
OpenVEX document), `now` (CVEs before, after and now: the hosts read at report time).
Imported by campaign, web and the CLI; imports neither of them.
"""
