"""The docs a user reads match the code: generated pages are fresh, links resolve."""

from __future__ import annotations

import re

from spyglass.cli.reference import cli_markdown, settings_markdown
from spyglass.settings import Settings
from tests.conftest import REPO


def test_generated_reference_pages_are_up_to_date() -> None:
    hint = "run: .venv/bin/python -m spyglass.cli.reference docs"
    assert (REPO / "docs" / "cli.md").read_text() == cli_markdown(), hint
    assert (REPO / "docs" / "settings.md").read_text() == settings_markdown(), hint


def test_every_setting_is_documented_with_its_variable() -> None:
    page = (REPO / "docs" / "settings.md").read_text()
    for name in Settings.model_fields:
        assert f"`SPYGLASS_{name.upper()}`" in page


def test_readme_starts_with_the_two_commands_and_its_links_resolve() -> None:
    readme = (REPO / "README.md").read_text()
    first_block = readme.split("```")[1]
    assert "scripts/demo.sh" in first_block and "scripts/test.sh" in first_block
    assert (REPO / ".ci" / "run").read_text().strip().endswith('scripts/test.sh"')
    for target in re.findall(r"\]\(([^)#]+)\)", readme):
        if not target.startswith("http"):
            assert (REPO / target).exists(), target
