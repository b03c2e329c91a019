"""The README stays true: its configuration table lists exactly the config groups, options
and experiments under conf/, and every command line it shows composes (Hydra entry points)
or parses (the benchmark and report command lines). Nothing is trained here."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser

from graphvision.utils import CONFIG_DIR
from tests.conftest import ROOT

README = ROOT / "README.md"
#: the Hydra entry points and the config each composes
HYDRA_ENTRIES = {"train": "train", "eval": "eval", "predict": "predict"}


def config_groups(conf: Path) -> dict[str, set[str]]:
    """Every config group under ``conf`` (a folder holding YAML files) and its options."""
    groups: dict[str, set[str]] = {}
    for path in conf.rglob("*.yaml"):
        group = path.parent.relative_to(conf).as_posix()
        if group != ".":
            groups.setdefault(group, set()).add(path.stem)
    return groups


def readme_table(text: str) -> dict[str, set[str]]:
    """The configuration table: group -> the options its row names (backquoted, outside the
    parenthesised notes)."""
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    table: dict[str, set[str]] = {}
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        options = set(re.findall(r"`([^`]+)`", re.sub(r"\([^)]*\)", "", cells[1])))
        for group in re.findall(r"`([^`]+)`", cells[0]):
            table[group] = options
    return table


def readme_commands(text: str) -> list[str]:
    """Every ``python -m graphvision.<entry> ...`` line of the README, in code blocks or
    in inline code."""
    found = re.findall(r"python -m graphvision\.[a-z_]+[^`\n]*", text)
    return [c.strip() for c in found]


def test_configuration_table_lists_every_group_and_option():
    table = readme_table(README.read_text())
    groups = config_groups(Path(CONFIG_DIR))
    assert table == groups, {
        "missing from the README": {
            g: sorted(o - table.get(g, set())) for g, o in groups.items() if o != table.get(g)
        },
        "in the README but not under conf/": {
            g: sorted(o - groups.get(g, set())) for g, o in table.items() if o != groups.get(g)
        },
    }


def test_configuration_table_test_fails_on_an_unlisted_option(tmp_path):
    """The check above would catch a new option without a README row."""
    import shutil

    conf = tmp_path / "conf"
    shutil.copytree(CONFIG_DIR, conf)
    (conf / "model" / "gnn" / "sage.yaml").write_text("_target_: graphvision.nn.gnn.RegionGNN\n")
    (conf / "augment").mkdir()
    (conf / "augment" / "flip.yaml").write_text("p: 0.5\n")
    table, groups = readme_table(README.read_text()), config_groups(conf)
    assert groups["model/gnn"] - table["model/gnn"] == {"sage"}
    assert "augment" in groups and "augment" not in table


def _sweeps(overrides: list[str]) -> list[list[str]]:
    """A multirun's overrides as the jobs it runs (every comma list expanded)."""
    jobs = [[]]
    for parsed, raw in zip(OverridesParser.create().parse_overrides(overrides), overrides):
        values = list(parsed.sweep_string_iterator()) if parsed.is_sweep_override() else [None]
        key = raw.split("=", 1)[0]
        jobs = [job + [raw if v is None else f"{key}={v}"] for job in jobs for v in values]
    return jobs


def _compose(config_name: str, overrides: list[str]) -> None:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        compose(config_name, overrides=overrides, return_hydra_config=True)


COMMANDS = readme_commands(README.read_text())


def test_readme_shows_commands_of_every_entry_point():
    entries = {c.split()[2].removeprefix("graphvision.") for c in COMMANDS}
    assert entries == {"train", "eval", "predict", "report", "bench", "data.download"}
    assert len(COMMANDS) >= 15


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_is_valid(command):
    words = shlex.split(command.replace("[", " ").replace("]", " "))
    entry, args = words[2].removeprefix("graphvision."), words[3:]
    if entry in HYDRA_ENTRIES:
        multirun = "-m" in args
        overrides = [a for a in args if a != "-m"]
        for job in _sweeps(overrides) if multirun else [overrides]:
            _compose(HYDRA_ENTRIES[entry], job)
    elif entry == "bench":
        from graphvision.bench.cli import parser

        parser().parse_args(args)
    elif entry == "report":
        from graphvision.report import parser

        parser().parse_args(args)
    elif entry == "data.download":
        from graphvision.data.download import parser

        parser().parse_args(args)
    else:
        pytest.fail(f"unknown entry point in the README: {command}")
