"""The documentation: the README stays a user's page, every command and option is in the CLI
reference, and the docs site builds with --strict (broken links and missing pages fail)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from castinspect.cli import app

ROOT = Path(__file__).resolve().parents[1]


def commands(group, prefix=()):
    """(command path, command) for every command of the Typer app, sub-commands included."""
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from commands(command, (*prefix, name))
        else:
            yield (*prefix, name), command


def test_every_command_and_option_is_in_the_cli_reference():
    reference = (ROOT / "docs" / "cli.md").read_text()
    missing = []
    for path, command in commands(typer.main.get_command(app)):
        name = " ".join(path)
        heading = f"## castinspect {name}\n"
        if heading not in reference:
            missing.append(f"command {name}")
            continue
        section = reference.split(heading, 1)[1].split("\n## ", 1)[0]
        for param in command.params:
            if param.name == "help":
                continue
            names = [param.name.upper()] if param.param_type_name == "argument" else param.opts + param.secondary_opts
            missing += [f"{name} {n}" for n in names if not re.search(rf"`{re.escape(n)}`", section)]
    assert not missing, "not in docs/cli.md: " + ", ".join(missing)


def test_readme_is_a_users_page():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200
    first_screen = "\n".join(lines[:25]).lower()
    assert "own photos" in first_screen and "make demo" in "\n".join(lines[:40])


def test_docs_site_builds_strict(tmp_path):
    pytest.importorskip("mkdocs")
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                       cwd=ROOT, capture_output=True, text=True, env={"NO_MKDOCS_2_WARNING": "1", "PATH": ""})
    assert r.returncode == 0, r.stdout + r.stderr
    results = tmp_path / "site" / "results"
    assert (results / "bench" / "index.html").is_file() and (results / "bench.json").is_file()
