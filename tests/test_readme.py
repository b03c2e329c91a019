"""The docs stay true. Every doc file (``DOCS``: the README, the front door, and the docs
beside what they describe) is read; its command lines must compose (Hydra entry points) or
parse (the benchmark, report and download command lines), its relative links must reach a
file (and a heading) that exists; ``conf/README.md``'s configuration table lists exactly the
config groups, options and experiments under ``conf/``; the README keeps its install, train
and test commands in at most 250 lines. Nothing is trained here."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser

from graphvision.utils import CONFIG_DIR
from tests.conftest import ROOT

README = ROOT / "README.md"
#: the configuration's doc, beside the configs (shipped with them as package data)
CONF_README = ROOT / "conf" / "README.md"
#: every doc file of the repository; a new one is added here (a test checks none is missing)
DOCS = [
    README,
    CONF_README,
    ROOT / "data" / "README.md",
    ROOT / "experiments" / "README.md",
    ROOT / "experiments" / "seed_question" / "README.md",
    ROOT / "graphvision" / "README.md",
]
#: the heading of conf/README.md's configuration table
TABLE_HEADING = "## Config groups"
#: the README's limit: the front door, not the manual
README_MAX_LINES = 250
#: what the README must show as commands of its own (code lines): install, a trained model
#: from a fresh clone (synthetic and COCO), the tests; ``.ci/run``'s install and test lines
#: are added to these
FRONT_DOOR = [
    'pip install -e ".[dev]"',
    "python -m graphvision.train",
    "python -m graphvision.data.download coco --root data/coco",
    "python -m graphvision.train experiment=coco_relations data.root=data/coco",
    "python -m pytest",
    'python -m pytest -m "not slow"',
]
CI_SCRIPT = ROOT / ".ci" / "run"
#: the Hydra entry points and the config each composes
HYDRA_ENTRIES = {"train": "train", "eval": "eval", "predict": "predict"}
#: every entry point the docs must show at least once
ENTRY_POINTS = {"train", "eval", "predict", "report", "bench", "data.download"}
#: folders whose Markdown files are not docs of this repository
NOT_DOCS = {"logs", "outputs", "multirun", "build", "dist", "node_modules"}


def _name(doc: Path) -> str:
    return doc.relative_to(ROOT).as_posix()


# --- reading the docs ---------------------------------------------------------------------


def config_groups(conf: Path) -> dict[str, set[str]]:
    """Every config group under ``conf`` (a folder holding YAML files) and its options."""
    groups: dict[str, set[str]] = {}
    for path in conf.rglob("*.yaml"):
        group = path.parent.relative_to(conf).as_posix()
        if group != ".":
            groups.setdefault(group, set()).add(path.stem)
    return groups


def config_table(text: str) -> dict[str, set[str]]:
    """The configuration table under ``TABLE_HEADING``: group -> the options its row names
    (backquoted, outside the parenthesised notes)."""
    if TABLE_HEADING not in text:
        raise AssertionError(f"{_name(CONF_README)} has no {TABLE_HEADING!r} section")
    section = text.split(TABLE_HEADING, 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    table: dict[str, set[str]] = {}
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        options = set(re.findall(r"`([^`]+)`", re.sub(r"\([^)]*\)", "", cells[1])))
        for group in re.findall(r"`([^`]+)`", cells[0]):
            table[group] = options
    return table


def table_mismatch(table: dict[str, set[str]], groups: dict[str, set[str]]) -> dict:
    """What the table leaves out of ``groups`` and what it lists that is not there (empty
    dicts when they agree)."""
    return {
        "missing from conf/README.md": {
            g: sorted(o - table.get(g, set())) for g, o in groups.items() if o != table.get(g)
        },
        "in conf/README.md but not under conf/": {
            g: sorted(o - groups.get(g, set())) for g, o in table.items() if o != groups.get(g)
        },
    }


def doc_commands(text: str) -> list[str]:
    """Every ``python -m graphvision.<entry> ...`` line of a doc, in code blocks or in inline
    code."""
    found = re.findall(r"python -m graphvision\.[a-z_]+[^`\n]*", text)
    return [c.strip() for c in found]


def code_lines(text: str) -> set[str]:
    """The lines of a doc's indented code blocks, stripped."""
    return {line.strip() for line in text.splitlines() if line.startswith("    ")}


def missing_commands(text: str, required: list[str]) -> list[str]:
    """The ``required`` commands that no code line of ``text`` shows."""
    shown = code_lines(text)
    return [c for c in required if c not in shown]


def _without_code_blocks(text: str) -> str:
    """``text`` without its fenced and indented code blocks."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    return "\n".join(line for line in text.splitlines() if not line.startswith("    "))


def _prose(text: str) -> str:
    """``text`` without its code: code blocks and inline code spans."""
    return re.sub(r"`[^`\n]*`", "", _without_code_blocks(text))


def doc_links(text: str) -> list[str]:
    """The targets of a doc's Markdown links and images, outside code."""
    return re.findall(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", _prose(text))


def heading_anchors(text: str) -> set[str]:
    """The anchors GitHub gives a doc's headings (lower case, punctuation dropped, spaces
    as hyphens, ``-1``, ``-2`` after repeats)."""
    anchors: set[str] = set()
    for title in re.findall(r"^#{1,6} +(.+?) *#* *$", _without_code_blocks(text), flags=re.M):
        title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title).replace("`", "")
        slug = re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
        anchor, n = slug, 0
        while anchor in anchors:
            n += 1
            anchor = f"{slug}-{n}"
        anchors.add(anchor)
    return anchors


def broken_links(doc: Path, text: str | None = None) -> list[str]:
    """Each relative link of ``doc`` that reaches no file in the repository, or no heading of
    the Markdown file it names, with the reason."""
    text = doc.read_text() if text is None else text
    broken = []
    for link in doc_links(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", link):  # https:, mailto:
            continue
        path, _, anchor = link.partition("#")
        target = (doc.parent / path).resolve() if path else doc
        if not target.is_relative_to(ROOT):
            broken.append(f"{link}: outside the repository")
        elif not target.exists():
            broken.append(f"{link}: no {target.relative_to(ROOT).as_posix()}")
        elif anchor and target.suffix == ".md":
            if anchor not in heading_anchors(target.read_text() if path else text):
                broken.append(f"{link}: no heading #{anchor} in {_name(target)}")
    return broken


# --- every doc file is tested -------------------------------------------------------------


def _is_doc(path: Path) -> bool:
    """A Markdown file of the repository's own (not of a dataset, a run or a tool's cache)."""
    parts = path.relative_to(ROOT).parts
    if any(p.startswith(".") or p.endswith(".egg-info") or p in NOT_DOCS for p in parts[:-1]):
        return False
    return parts[0] != "data" or parts == ("data", "README.md")


def test_every_doc_file_is_in_docs():
    found = {p for p in ROOT.rglob("*.md") if _is_doc(p)}
    assert found == set(DOCS), {
        "doc files not in DOCS (add them)": sorted(_name(p) for p in found - set(DOCS)),
        "in DOCS but absent": sorted(_name(p) for p in set(DOCS) - found),
    }


# --- the configuration table --------------------------------------------------------------


def test_configuration_table_lists_every_group_and_option():
    mismatch = table_mismatch(
        config_table(CONF_README.read_text()), config_groups(Path(CONFIG_DIR))
    )
    assert mismatch == {k: {} for k in mismatch}, mismatch


def test_configuration_table_test_fails_on_an_unlisted_option(tmp_path):
    """The check above would catch a new option (or group) without a row in conf/README.md."""
    conf = tmp_path / "conf"
    shutil.copytree(CONFIG_DIR, conf)
    (conf / "model" / "gnn" / "sage.yaml").write_text("_target_: graphvision.nn.gnn.RegionGNN\n")
    (conf / "augment").mkdir()
    (conf / "augment" / "flip.yaml").write_text("p: 0.5\n")
    mismatch = table_mismatch(config_table(CONF_README.read_text()), config_groups(conf))
    missing = mismatch["missing from conf/README.md"]
    assert missing["model/gnn"] == ["sage"]
    assert missing["augment"] == ["flip"]


def test_configuration_table_test_fails_on_an_option_gone_from_the_doc():
    """... and an option that exists under conf/ but went missing from conf/README.md."""
    text = CONF_README.read_text().replace("`gatv2`, ", "", 1)
    assert "`gatv2`, " in CONF_README.read_text(), "the model/gnn row no longer lists `gatv2`"
    mismatch = table_mismatch(config_table(text), config_groups(Path(CONFIG_DIR)))
    assert mismatch["missing from conf/README.md"]["model/gnn"] == ["gatv2"]


# --- the front door -----------------------------------------------------------------------


def _front_door() -> list[str]:
    """``FRONT_DOOR`` and the install and test lines of the CI script, which follows the
    README."""
    required = list(FRONT_DOOR)
    if CI_SCRIPT.is_file():
        for line in CI_SCRIPT.read_text().splitlines():
            line = line.strip()
            if line.startswith(("pip install", "python -m pytest")) and line not in required:
                required.append(line)
    return required


def test_readme_keeps_its_install_train_and_test_commands():
    assert missing_commands(README.read_text(), _front_door()) == []


def test_readme_command_check_fails_on_a_missing_command():
    text = README.read_text()
    gone = "python -m graphvision.train experiment=coco_relations data.root=data/coco"
    without = "\n".join(line for line in text.splitlines() if line.strip() != gone)
    assert missing_commands(without, _front_door()) == [gone]
    without = text.replace('    python -m pytest -m "not slow"\n', "")
    assert missing_commands(without, _front_door()) == ['python -m pytest -m "not slow"']


def test_readme_is_at_most_250_lines():
    lines = len(README.read_text().splitlines())
    assert lines <= README_MAX_LINES, (
        f"README.md has {lines} lines (at most {README_MAX_LINES}): move the details into "
        + ", ".join(_name(d) for d in DOCS[1:])
    )


# --- links --------------------------------------------------------------------------------


@pytest.mark.parametrize("doc", DOCS, ids=_name)
def test_doc_links_reach_files_and_headings(doc):
    assert broken_links(doc) == []


def test_link_check_fails_on_a_broken_link():
    doc = ROOT / "experiments" / "README.md"
    text = (
        "# t\n\n## A heading: `x.y`\n\n[ok](#a-heading-xy) [ok](figures/resolution_sweep.png)"
        " [gone](figures/gone.png) [anchor](../README.md#no-such-heading)"
        " [out](../../elsewhere.md) `[code](not/a/link.md)` [web](https://example.org)\n"
    )
    assert broken_links(doc, text) == [
        "figures/gone.png: no experiments/figures/gone.png",
        "../README.md#no-such-heading: no heading #no-such-heading in README.md",
        "../../elsewhere.md: outside the repository",
    ]


# --- commands -----------------------------------------------------------------------------


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


def _commands() -> dict[str, str]:
    """Every command line of every doc, once: command -> the first doc showing it."""
    commands: dict[str, str] = {}
    for doc in DOCS:
        for command in doc_commands(doc.read_text()):
            commands.setdefault(command, _name(doc))
    return commands


COMMANDS = _commands()


@pytest.mark.parametrize("doc", DOCS, ids=_name)
def test_doc_shows_commands(doc):
    """Each doc shows how to run what it describes (and the command pattern still finds
    them)."""
    assert doc_commands(doc.read_text()), f"{_name(doc)} shows no python -m graphvision.* line"


def test_docs_show_commands_of_every_entry_point():
    entries = {c.split()[2].removeprefix("graphvision.") for c in COMMANDS}
    assert entries == ENTRY_POINTS
    assert len(COMMANDS) >= 40


@pytest.mark.parametrize(
    "command", list(COMMANDS), ids=[f"{doc}:{c[:60]}" for c, doc in COMMANDS.items()]
)
def test_doc_command_is_valid(command):
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
        pytest.fail(f"unknown entry point in {COMMANDS[command]}: {command}")
