"""The docs name what exists: docs/architecture.md lists every module of the package and no module that is gone,
every file path the docs and README mention exists, and tests/ mirrors the package's tree."""

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "napari_skd"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: A repository path in backticks or a table cell, e.g. `tests/restoration/test_store.py` or `benchmarks/x.py`.
REPO_PATH = re.compile(r"(?<![\w/.-])((?:tests|docs|benchmarks|src|sample_data)/[\w/.-]*\w)")


def modules() -> set[str]:
    """Every module file of the package, relative to it (``restoration/store.py``), without the trivial ones."""
    return {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if p.name not in ("__init__.py", "__main__.py")}


def named_modules(text: str) -> set[str]:
    """Module paths named in backticks, e.g. `restoration/store.py` or `speed.py` (``a.py``, ``b.py`` lists too)."""
    return {m for m in re.findall(r"`([\w/]+\.py)`", text) if not m.startswith(("tests/", "docs/", "benchmarks/"))}


def test_architecture_names_every_module_and_only_existing_ones():
    text = (ROOT / "docs" / "architecture.md").read_text()
    named = named_modules(text)
    missing = sorted(modules() - named)
    gone = sorted(m for m in named if not (PACKAGE / m).exists())
    assert not missing, f"docs/architecture.md does not describe: {missing}"
    assert not gone, f"docs/architecture.md names modules that do not exist: {gone}"


def test_paths_in_the_docs_exist():
    gone = []
    for doc in DOCS:
        for path in REPO_PATH.findall(doc.read_text()):
            if "*" in path or "<" in path:
                continue
            if not (ROOT / path.split("::")[0]).exists():
                gone.append(f"{doc.relative_to(ROOT)}: {path}")
    assert not gone, "paths named in the docs that do not exist:\n" + "\n".join(gone)


def test_tests_mirror_the_package_tree():
    """A test folder is named after the package folder it tests (``_napari`` -> ``napari``)."""
    packages = {p.name.lstrip("_") for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    folders = {p.name for p in (ROOT / "tests").iterdir() if p.is_dir() and any(p.glob("test_*.py"))}
    assert folders <= packages, f"test folders without a package: {sorted(folders - packages)}"
    tested = {p for p in packages if p in folders}
    assert tested == packages, f"packages without a test folder: {sorted(packages - tested)}"


def documented_commands() -> list[tuple[str, list[str]]]:
    """Every ``napari-skd ...`` line of the shell blocks in the docs and README, and of the Makefile's demo."""
    lines = []
    for doc in DOCS:
        for lang, block in re.findall(r"```(\w*)\n(.*?)```", doc.read_text(), re.S):
            if lang in ("bash", "sh", "console", ""):
                lines += [
                    (doc.name, line.strip().removeprefix("$ ")) for line in block.replace("\\\n", " ").splitlines()
                ]
    makefile = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    lines += [("Makefile", "napari-skd " + m) for m in re.findall(r"\$\(CLI\)\s+(.*)", makefile)]
    found = []
    for where, line in lines:
        if m := re.match(r"(?:\S*/)?napari-skd\s+(.*)$", line):
            found.append((where, shlex.split(re.split(r"\s#", m.group(1))[0])))
    return found


def test_documented_command_lines_parse():
    """A renamed command or flag breaks this, not a reader's first try."""
    from napari_skd.cli import build_parser

    commands = documented_commands()
    assert len(commands) >= 10 and {args[0] for _, args in commands} >= {"restore", "distill", "bench", "convert"}
    wrong = []
    for where, args in commands:
        try:
            build_parser().parse_args(args)
        except SystemExit:
            wrong.append(f"{where}: napari-skd {' '.join(args)}")
    assert not wrong, "documented commands the CLI does not accept:\n" + "\n".join(wrong)
