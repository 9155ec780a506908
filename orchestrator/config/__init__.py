"""bluegreen.yml and the other files users give us.

Import-free on purpose: the rollback path imports `config.snapshot` (stdlib only) and must
not pay for pydantic or PyYAML. Import what you need from the modules:
`location` (where the config is), `files` (size, UTF-8, YAML/JSON reading, for every file
we read), `types` (field types), `models` (pydantic models of bluegreen.yml), `errors`
(pydantic error -> one BadInput), `loaded` (`load_config`, `LoadedConfig`), `snapshot`.
"""
