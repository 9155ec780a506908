"""The CLI surface: help that teaches, exit codes, and bad input that changes nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
from click.testing import CliRunner

from orchestrator.cli import main
from orchestrator.cli.app import VERBS

EXAMPLE = Path(__file__).resolve().parents[3] / "inventories" / "example" / "bluegreen.yml"


def test_help_lists_commands_and_exit_codes() -> None:
    out = CliRunner().invoke(main, ["--help"])
    assert out.exit_code == 0
    for word in ("rollout", "rollback", "status", "verify", "lab", "Exit codes", "6  outside"):
        assert word in out.output


def test_help_does_not_import_heavy_modules() -> None:
    code = (
        "import sys; from orchestrator.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in "
        "('ansible', 'ansible_runner', 'pytest', '_pytest', 'testinfra', 'paramiko', 'rich',"
        " 'starlette', 'uvicorn', 'jinja2', 'prometheus_client', 'psycopg')]\n"
        "assert not heavy, heavy"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


VERB_MODULES = ("audit", "campaign", "lab", "probes", "rollout", "schedule", "state", "traffic")


def _imported_after(argv: list[str]) -> set[str]:
    """The modules of orchestrator.cli a fresh interpreter imported to run `argv`."""
    code = (
        "import sys; from orchestrator.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        "sys.stderr.write(' '.join(m for m in sys.modules if m.startswith('orchestrator.cli.')))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    return {m.removeprefix("orchestrator.cli.") for m in proc.stderr.split()}


def test_help_imports_no_verb_module_and_rollback_only_its_own() -> None:
    assert _imported_after(["--help"]).isdisjoint(VERB_MODULES)
    assert _imported_after(["rollback", "--help"]) & set(VERB_MODULES) == {"traffic"}
    assert _imported_after(["campaign", "--help"]) & set(VERB_MODULES) == {"campaign"}


def test_the_verb_table_says_what_each_command_says() -> None:
    """`--help` lists the verbs from the table without importing them: each entry must
    name its command and carry the first sentence of the command's own help."""
    ctx = click.Context(main)
    for name, verb in VERBS.items():
        command = main.get_command(ctx, name)
        assert command is not None and command.name == name, verb
        assert verb.summary == command.get_short_help_str(10**6), name


def test_every_command_of_a_verb_module_is_in_the_table() -> None:
    """A verb added to a cli module but not to `VERBS` would never run."""
    import importlib

    listed = {(v.module, v.attribute) for v in VERBS.values()}
    for module_name in VERB_MODULES:
        module = importlib.import_module(f"orchestrator.cli.{module_name}")
        commands = {n: c for n, c in vars(module).items() if isinstance(c, click.Command)
                    and getattr(c.callback, "__module__", None) == module.__name__}
        nested = {id(sub) for c in commands.values() if isinstance(c, click.Group)
                  for sub in c.commands.values()}
        for attr, command in commands.items():
            if id(command) not in nested:
                assert (module_name, attr) in listed, f"orchestrator.cli.{module_name}.{attr}"


def test_missing_config_is_bad_input(tmp_path: Path) -> None:
    out = CliRunner().invoke(main, ["-c", str(tmp_path / "nope.yml"), "status"])
    assert out.exit_code == 2
    assert "nope.yml" in out.output
    assert "fix:" in out.output


def test_unknown_key_names_file_field_and_fix(tmp_path: Path) -> None:
    cfg = tmp_path / "bluegreen.yml"
    cfg.write_text(EXAMPLE.read_text().replace("max_failures: 3", "max_failurez: 3"))
    out = CliRunner().invoke(main, ["-c", str(cfg), "status"])
    assert out.exit_code == 2
    assert "bluegreen.yml" in out.output and "max_failurez" in out.output
    assert "max_failures" in out.output  # the suggestion


def test_rollout_refuses_without_yes_when_not_interactive() -> None:
    out = CliRunner().invoke(main, ["-c", str(EXAMPLE), "rollout", "web"])
    assert out.exit_code == 2
    assert "--yes" in out.output


def test_bad_package_argument_is_rejected_before_anything_runs() -> None:
    out = CliRunner().invoke(
        main, ["-c", str(EXAMPLE), "rollout", "web", "--yes", "--package", "demo-web=1.0;rm -rf /"]
    )
    assert out.exit_code == 2
    assert "package" in out.output.lower()


def test_unknown_service_is_bad_input() -> None:
    out = CliRunner().invoke(main, ["-c", str(EXAMPLE), "rollback", "wbe", "--reason", "x"])
    assert out.exit_code == 2
    assert "web" in out.output  # did you mean


def test_bad_input_creates_no_state_file(tmp_path: Path) -> None:
    cfg = tmp_path / "bluegreen.yml"
    cfg.write_text(
        EXAMPLE.read_text().replace(
            "inventory: hosts.yml", f"inventory: {EXAMPLE.parent / 'hosts.yml'}"
        )
    )
    for argv in (
        ["rollback", "wbe", "--reason", "x"],
        ["flip", "nope", "--to", "green", "--reason", "x"],
        ["status", "nope"],
        ["verify", "nope"],
    ):
        out = CliRunner().invoke(main, ["-c", str(cfg), *argv])
        assert out.exit_code == 2, (argv, out.output)
    assert not (tmp_path / ".bluegreen").exists()
