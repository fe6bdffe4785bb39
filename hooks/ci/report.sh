#!/bin/sh
# gitml CI step 3, on a pull/merge request: compare the new runs (HEAD's) with the latest
# runs of the base branch, check a promotion (a change of .gitml/stages.yaml), and publish
# the Markdown report: GITML_REPORT_DIR/report.md (charts beside it), the GitHub job
# summary, and a comment on the pull/merge request when a token is given
# (GITHUB_TOKEN, or GITLAB_TOKEN with api scope). Fails when the promotion check fails.
set -eu
. "$(dirname "$0")/lib.sh"
base=$(base_branch)
if [ -z "$base" ]; then
    echo "gitml: not a pull or merge request; no report" >&2
    exit 0
fi
mkdir -p "$report_dir"
status=0
if ! gitml compare --branch "$remote/$base" --branch HEAD -o "$report_dir/compare.md"; then
    echo "No runs to compare (see the job's log)." > "$report_dir/compare.md"
fi
cat "$report_dir/compare.md" > "$report_dir/report.md"
if ! git diff --quiet "$remote/$base" HEAD -- .gitml/stages.yaml; then
    gitml registry check --base "$remote/$base" --report "$report_dir/registry.md" || status=1
    printf '\n' >> "$report_dir/report.md"
    cat "$report_dir/registry.md" >> "$report_dir/report.md"
fi
if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then
    cat "$report_dir/report.md" >> "$GITHUB_STEP_SUMMARY"
fi
"$python" -I "$(dirname "$0")/comment.py" "$report_dir/report.md"
exit $status
