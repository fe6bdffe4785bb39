#!/bin/sh
# gitml CI step 2: train (GITML_TRAIN, a shell command; default: the MLproject's main entry
# point) and push the runs it logged, artifacts first. Runs started here are tagged with
# the CI job (gitml.ci.*: provider, job URL, pipeline, pull request, commit).
set -eu
. "$(dirname "$0")/lib.sh"
sh -c "${GITML_TRAIN:-$python -I -m gitml run .}"
gitml push "$remote"
