"""The README's two set-up commands are the ones the project actually runs."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    return [
        line for block in blocks for line in block.splitlines() if "python3 -m venv .venv" in line
    ]


def test_readme_has_the_two_setup_commands_and_the_loom_one():
    commands = readme_commands()
    assert len(commands) == 3
    assert commands[0].endswith("myopia report")
    assert commands[1].endswith("python -m pytest") and "apt-get install" in commands[1]
    assert ".venv/bin/ruff check . && " in commands[1]  # lint fails the run before the tests
    assert commands[2].endswith("myopia loom story.sqlite")
    for command in commands:
        assert "torch==2.13.0" in command and "requirements-nodeps.txt" in command


def test_ci_runs_the_readme_test_command():
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert readme_commands()[1] in ci_lines
