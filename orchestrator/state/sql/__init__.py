"""What every SQL state backend shares: the rows, the side state machine, runs and their
journal, and the audit chain, written once in SQL that SQLite and PostgreSQL both run.

A backend (`orchestrator.state.sqlite`, later a PostgreSQL one) combines the mixins of this
package and supplies what differs: the connection and its transactions, its schema and
migrations runner, its locks, and the dialect knobs of `database.SqlDatabase`.
"""
