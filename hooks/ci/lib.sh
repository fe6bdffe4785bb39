# Shared by gitml's CI steps (sourced). What the CI environment says, in one place:
#   GITML_REMOTE  the git remote runs go to and come from (default: origin)
#   GITML_PYTHON  the Python that has (or gets) gitml (default: python3)
# gitml runs in isolated mode (python -I: neither the current folder, the checkout, nor
# PYTHONPATH goes on sys.path), so a gitml/ or gitml.py committed in the pull request
# cannot stand in for the installed gitml.
python="${GITML_PYTHON:-python3}"
remote="${GITML_REMOTE:-origin}"
report_dir="${GITML_REPORT_DIR:-gitml-report}"

gitml() { "$python" -I -m gitml "$@"; }

# the target branch of a pull/merge request ("" when this is not one)
base_branch() {
    if [ -n "${GITHUB_BASE_REF:-}" ]; then
        echo "$GITHUB_BASE_REF"
    elif [ -n "${CI_MERGE_REQUEST_TARGET_BRANCH_NAME:-}" ]; then
        echo "$CI_MERGE_REQUEST_TARGET_BRANCH_NAME"
    fi
}

# the branch a push built ("" on a pull/merge request or a tag)
pushed_branch() {
    if [ -n "${GITHUB_ACTIONS:-}" ]; then
        case "${GITHUB_EVENT_NAME:-}:${GITHUB_REF:-}" in
            push:refs/heads/*) echo "${GITHUB_REF#refs/heads/}" ;;
        esac
    elif [ -n "${CI_COMMIT_BRANCH:-}" ] && [ -z "${CI_MERGE_REQUEST_IID:-}" ]; then
        echo "$CI_COMMIT_BRANCH"
    fi
}

# the branch promotions are applied on (GitLab says; elsewhere GITML_MAIN_BRANCH or main)
main_branch() { echo "${GITML_MAIN_BRANCH:-${CI_DEFAULT_BRANCH:-main}}"; }
