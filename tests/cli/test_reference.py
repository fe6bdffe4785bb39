import os

from gitml.cli.reference import reference
from tests.conftest import ROOT


def test_cli_reference_is_up_to_date():
    with open(os.path.join(ROOT, "docs", "cli.md")) as f:
        assert f.read() == reference(), "run: python -m gitml.cli.reference > docs/cli.md"
