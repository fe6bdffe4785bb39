"""gitml ui's registry pages through Starlette's test client over a real registry:
ssh-signed tags made by gitml and by the real ``git tag -s``, a committed policy that
requires trusted tags for production, an untrusted promotion that is ignored."""

from __future__ import annotations

import shutil

import pytest
from markupsafe import escape

pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402

from gitml.ui import allowed_hosts  # noqa: E402
from gitml.ui.app import make_app  # noqa: E402
from tests.conftest import git  # noqa: E402
from tests.uirepo import HOSTILE, HOSTILE_USER, build, build_registry  # noqa: E402

pytestmark = pytest.mark.skipif(not shutil.which("ssh-keygen"), reason="ssh-keygen missing")


@pytest.fixture
def ui(client, repo, tmp_path):
    keys = tmp_path / "keys"
    keys.mkdir()
    ids = {**build(client), **build_registry(client, repo, keys)}
    return TestClient(make_app(client, allowed_hosts=allowed_hosts("127.0.0.1")), base_url="http://127.0.0.1"), ids


def _row(page: str, attribute: str) -> str:
    start = page.index(attribute)
    return page[start : page.index("</tr>", start)]


def test_models_list_shows_latest_versions_and_stages(ui):
    web, _ = ui
    page = web.get("/models").text
    row = _row(page, 'data-model="churn"')
    assert 'href="/models/churn"' in row and "v2.0.0" in row and "<td>2</td>" in row
    assert "production</span> v1.0.0" in row and "staging</span> v2.0.0" in row
    assert "1 tag(s) ignored" in row
    assert 'href="/models"' in web.get("/").text  # linked from every page's header


def test_model_page_versions_stages_signers_and_history(ui):
    web, ids = ui
    response = web.get("/models/churn")
    assert response.status_code == 200
    page = response.text
    production = _row(page, 'data-stage="production"')
    assert "v1.0.0" in production and "churn#production#1" in production
    assert 'data-signature="trusted"' in production and "bot@example.com" in production
    staging = _row(page, 'data-stage="staging"')
    assert "v2.0.0" in staging and 'data-signature="unsigned"' in staging
    v1 = _row(page, 'data-version="v1.0.0"')
    assert f'href="/run/{ids["parent"]}"' in v1 and "production" in v1
    assert f'href="/run/{ids["other"]}"' in _row(page, 'data-version="v2.0.0"')
    # the promotion made with another key by the real git: in the history, ignored, and why
    assert "churn#production#9" in page and 'data-signature="untrusted"' in page
    assert "signed by a key the policy does not trust" in page
    assert "Stages whose tags must be signed by a trusted key" in page and "production" in page


def test_registry_pages_escape_what_tags_and_runs_hold(ui):
    web, _ = ui
    page = web.get("/models/churn").text
    assert HOSTILE not in page and escape(HOSTILE) in page  # the description
    assert HOSTILE_USER not in page and escape(HOSTILE_USER) in page  # the tagger's name
    assert "<script>" not in web.get("/models").text


def test_unknown_and_invalid_model_names(ui):
    web, _ = ui
    missing = web.get("/models/nope")
    assert missing.status_code == 404 and "no registered model" in missing.text
    bad = web.get("/models/%3Cscript%3Ealert(1)%3C%2Fscript%3E")
    assert bad.status_code == 400 and "<script>alert" not in bad.text and "&lt;script&gt;" in bad.text


def test_a_newly_committed_policy_shows_without_a_restart(ui, repo, tmp_path):
    """The server read the policy for its first page; a commit trusting the stranger's key
    too makes its promotion of v2.0.0 count on the next page, with no restart."""
    web, _ = ui
    before = _row(web.get("/models/churn").text, 'data-stage="production"')
    assert "v1.0.0" in before and 'data-signature="trusted"' in before
    signers = repo / ".gitml" / "allowed_signers"
    stranger = (tmp_path / "keys" / "stranger.pub").read_text().strip()
    signers.write_text(signers.read_text() + f'eve@example.com namespaces="git" {stranger}\n')
    git(repo, "add", ".gitml/allowed_signers")
    git(repo, "commit", "-qm", "trust eve")
    page = web.get("/models/churn").text
    after = _row(page, 'data-stage="production"')
    assert "v2.0.0" in after and "churn#production#9" in after and 'data-signature="trusted"' in after
    assert "signed by a key the policy does not trust" not in page
    assert "production</span> v2.0.0" in _row(web.get("/models").text, 'data-model="churn"')
