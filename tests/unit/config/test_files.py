"""One reader for every file users give us: config, campaign and baseline files get the same
size limit, UTF-8 check, parse errors with line and column, and the same wording."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.baseline.approved import BASELINE_FILE, read_baseline
from orchestrator.campaign.model import CAMPAIGN_FILE, load_campaign
from orchestrator.config.files import FileKind, read_json_mapping, read_yaml_mapping
from orchestrator.config.loaded import CONFIG_FILE, load_config
from orchestrator.errors import BadInput

SMALL = FileKind(
    what="test file",
    max_bytes=64,
    missing_hint="create it",
    wrong_file_hint="point at the right file",
    content_hint="write a mapping",
)

READERS = {
    "config": (CONFIG_FILE, load_config),
    "campaign": (CAMPAIGN_FILE, load_campaign),
    "baseline": (BASELINE_FILE, read_baseline),
}


def bad_input(call: object, *args: object) -> BadInput:
    with pytest.raises(BadInput) as err:
        call(*args)  # type: ignore[operator]
    return err.value


@pytest.mark.parametrize("kind", sorted(READERS))
def test_every_file_kind_reports_the_same_problems_the_same_way(kind: str, tmp_path: Path) -> None:
    file_kind, read = READERS[kind]
    path = tmp_path / "f.yml"

    err = bad_input(read, path)
    assert f"{path}: {file_kind.what} not found" in err.message
    assert err.hint == file_kind.missing_hint

    err = bad_input(read, tmp_path)
    assert f"is a directory, not a {file_kind.what}" in err.message

    path.write_bytes(b"a: 1\nb: \xff\n")
    err = bad_input(read, path)
    assert err.message.startswith(f"{path}:2: {file_kind.what} is not valid UTF-8 (byte 0xff")

    path.write_bytes(b"#" * (file_kind.max_bytes + 1))
    err = bad_input(read, path)
    assert "byte limit; refusing to parse it" in err.message
    assert err.hint == file_kind.wrong_file_hint

    path.write_text("")
    err = bad_input(read, path)
    assert err.message == f"{path}: {file_kind.what} is empty"
    assert err.hint == file_kind.content_hint


def test_a_device_is_not_read(tmp_path: Path) -> None:
    err = bad_input(read_yaml_mapping, Path("/dev/zero"), SMALL)
    assert err.message == "/dev/zero: is not a regular file"
    assert err.hint == "point at the right file"


def test_yaml_errors_name_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "c.yml"
    path.write_text("name: x\nwaves:\n  - a\n - b\n")
    err = bad_input(read_yaml_mapping, path, SMALL)
    assert err.message.startswith(f"{path}:4:2: invalid YAML: ")
    assert "line 4, column 2" in (err.hint or "")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("[1, 2]", "got a list"), ("just text", "got the text 'just text'"), ("3", "the number 3")],
)
def test_the_top_level_must_be_a_mapping(text: str, expected: str, tmp_path: Path) -> None:
    path = tmp_path / "c.yml"
    path.write_text(text)
    err = bad_input(read_yaml_mapping, path, SMALL)
    assert "the top level must be a mapping (key: value)" in err.message
    assert expected in err.message and err.hint == "write a mapping"


def test_json_errors_name_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    path.write_text('{\n  "format": 1,\n  "fingerprint": {,}\n}\n')
    err = bad_input(read_json_mapping, path, SMALL)
    assert err.message.startswith(f"{path}:3:19: invalid JSON: ")


def test_a_bom_is_accepted_and_the_digest_is_of_the_bytes(tmp_path: Path) -> None:
    import hashlib

    path = tmp_path / "c.yml"
    raw = "\ufeffa: 1\n".encode()
    path.write_bytes(raw)
    data, digest = read_yaml_mapping(path, SMALL)
    assert data == {"a": 1}
    assert digest == hashlib.sha256(raw).hexdigest()


def test_baseline_with_a_bad_fingerprint_is_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "web.json"
    path.write_text('{"format": 1, "fingerprint": {"packages": []}}')
    err = bad_input(read_baseline, path)
    assert "`fingerprint` a mapping of mappings" in err.message


def _modules_after(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return set(out.split())


def test_the_config_package_is_import_free() -> None:
    loaded = _modules_after("import orchestrator.config")
    assert {m for m in loaded if m.startswith("orchestrator.")} == {"orchestrator.config"}


def test_the_snapshot_and_the_reader_need_neither_pydantic_nor_yaml() -> None:
    loaded = _modules_after("import orchestrator.config.snapshot, orchestrator.config.files")
    heavy = {m.split(".")[0] for m in loaded} & {"pydantic", "pydantic_core", "yaml"}
    assert not heavy
