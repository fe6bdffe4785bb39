#!/bin/sh
# gitml CI step 4, on the main branch after a merge: create the registry tags
# .gitml/stages.yaml asks for (nothing when they exist) and push them with their runs.
set -eu
. "$(dirname "$0")/lib.sh"
if [ "$(pushed_branch)" != "$(main_branch)" ] || [ ! -f .gitml/stages.yaml ]; then
    exit 0
fi
gitml registry apply
gitml push "$remote"
