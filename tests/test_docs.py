"""The README's commands, CI and the CLI's help stay true to each other."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from dplogs.cli import _COMMANDS, cli
from dplogs.errors import EXIT_CODES

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def _readme_commands() -> list[str]:
    return [line for block in re.findall(r"```sh\n(.*?)```", README, re.S) for line in block.splitlines()
            if line.startswith("python3 -m venv")]


def test_ci_runs_the_readme_test_command():
    ci = [line for line in (REPO / ".ci" / "run").read_text().splitlines() if line.startswith("python3")]
    tests = [c for c in _readme_commands() if "pytest" in c]
    assert len(tests) == 1 and ci == tests


def test_readme_main_command_runs_the_demo():
    main = [c for c in _readme_commands() if "pytest" not in c]
    assert len(main) == 1 and main[0].endswith("dplogs demo")


def test_every_command_has_help_and_every_option_is_explained():
    runner = CliRunner()
    top = runner.invoke(cli, ["--help"])
    assert top.exit_code == 0
    for name in _COMMANDS:
        assert name in top.output, f"{name} missing from dplogs --help"
        command = cli.get_command(None, name)
        for param in command.params:
            if param.param_type_name == "option":
                assert param.help, f"dplogs {name} {param.opts[0]} has no help text"
        sub = getattr(command, "commands", {})
        for child in sub.values():
            for param in child.params:
                if param.param_type_name == "option":
                    assert param.help, f"dplogs {name} {child.name} {param.opts[0]} has no help text"


def _example_args(example: str) -> list[str]:
    import shlex

    args = shlex.split(example.replace("\\\n", " "), comments=True)
    assert args[0] == "dplogs", example
    return args[1:]


def test_every_command_ends_its_help_with_examples_that_parse():
    """`dplogs ingest --help`, `protect --help`, `budget set --help`... showed no example to copy.
    Every command's help now ends with examples; each parses with that command's own options
    (from the repository root, where the paths they read exist) and its SQL or --where parses."""
    import os

    import click

    from dplogs.cli.examples import EXAMPLES
    from dplogs.engine.sql import parse_sql, parse_where

    paths = {n for n in _COMMANDS if n not in ("demo", "budget")}  # demo takes no arguments to show
    paths |= {f"budget {n}" for n in cli.get_command(None, "budget").commands}
    assert set(EXAMPLES) == paths
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        for path, examples in EXAMPLES.items():
            command = cli
            for name in path.split():
                command = command.get_command(None, name)
            shown = " ".join(CliRunner().invoke(cli, [*path.split(), "--help"]).output.split())
            for example in examples:
                assert " ".join(example.split()) in shown, (path, example)
                args = _example_args(example)
                assert args[:len(path.split())] == path.split(), example
                params = command.make_context(path, args[len(path.split()):]).params
                if params.get("sql_text"):
                    parse_sql(params["sql_text"])
                if params.get("where"):
                    parse_where(params["where"])
    finally:
        os.chdir(cwd)


def test_the_command_list_loads_no_command():
    """`dplogs --help` lists every command with its line without importing any of them (it took
    1.8 s, the detector's imports); `dplogs CMD --help` names the same line."""
    import subprocess
    import sys

    code = ("import sys; from click.testing import CliRunner; from dplogs.cli import cli; "
            "out = CliRunner().invoke(cli, ['--help']).output; "
            "print(sorted(m for m in sys.modules if m.startswith(('dplogs.cli.', 'dplogs.engine', 'dplogs.detect', "
            "'polars', 'opendp', 'dp_accounting')))); print(out)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    loaded, listing = res.stdout.split("\n", 1)
    assert loaded == "[]"
    for name, (_, line) in _COMMANDS.items():
        assert f"  {name}" in listing and line in " ".join(listing.split()), name
        assert cli.get_command(None, name).get_short_help_str(limit=200) == line


def test_readme_lists_every_exit_code():
    table = re.findall(r"^\| (\d+) \|", README, re.M)
    assert set(EXIT_CODES.values()) - {1} <= {int(c) for c in table}


def test_the_readme_tour_runs_as_written_on_the_sample_logs(tmp_path):
    """Every dplogs command of the README (the tour, then inspecting the store), as printed
    (continuation lines joined), in a fresh directory holding the repository's sample_logs/ and
    queries/: each exits 0 and the tour's outputs exist."""
    import os
    import subprocess
    import sys

    blocks = [b for b in re.findall(r"```sh\n(.*?)```", README, re.S) if b.startswith("dplogs ")]
    commands = [c for b in blocks for c in re.sub(r"\\\n\s*", " ", b).strip().splitlines()]
    assert len(commands) >= 18 and all(c.startswith("dplogs ") for c in commands)
    for name in ("sample_logs", "queries"):
        (tmp_path / name).symlink_to(REPO / name)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for command in commands:
        res = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, f"{command}\n{res.stderr[-2000:]}"
    assert (tmp_path / "nightly.html").stat().st_size > 0 and (tmp_path / "model.json").is_file()
    # the catch-up reports nights of the sample (not only yesterday, of which it holds no logs), every section released
    import json

    written = sorted((tmp_path / "reports").glob("nightly-soc-2*.json"))
    assert written and all(p.name.startswith("nightly-soc-2024-03-") for p in written), written
    for report in written:
        assert all("data" in s for s in json.loads(report.read_text())["sections"]), report.name
    # the help examples that spend nothing run on the tour's store as printed
    from dplogs.cli.examples import EXAMPLES

    for path in ("explain", "inspect", "budget show", "budget history", "budget verify"):
        for example in EXAMPLES[path]:
            res = subprocess.run(["dplogs", *_example_args(example)], cwd=tmp_path, env=env, capture_output=True,
                                 text=True, timeout=300)
            assert res.returncode == 0, f"{example}\n{res.stderr[-2000:]}"
    # then the README's Python API example, on the tour's store
    code = README.split("Embedding it:", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    names: dict = {}
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec(compile(code, "README.md", "exec"), names)
    finally:
        os.chdir(cwd)
    assert names["release"].privacy["epsilon"] == 1.0 and names["release"].to_polars().height >= 1
