#!/bin/sh
# gitml CI step 1: install gitml when missing, name the committer, fetch the runs and
# registry tags (CI checkouts fetch no refs/gitml/*) and a pull request's base branch.
set -eu
. "$(dirname "$0")/lib.sh"
if ! "$python" -I -c "import gitml" 2>/dev/null; then
    "$python" -I -m pip install --quiet "${GITML_PIP_SPEC:-gitml[report]}"
fi
git config user.name >/dev/null || git config user.name "${GITML_CI_NAME:-gitml CI}"
git config user.email >/dev/null || git config user.email "${GITML_CI_EMAIL:-gitml-ci@localhost}"
gitml fetch "$remote"   # refs/gitml/* and the registry tags, by name (no checkout fetches them)
base=$(base_branch)
if [ -n "$base" ]; then
    git fetch --quiet "$remote" "+refs/heads/$base:refs/remotes/$remote/$base"
fi
