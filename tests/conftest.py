"""Shared fixtures: isolated HOME and git config, real repositories in tmp_path."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The suite starts thousands of Pythons (the CLI, hooks, scripts, the peers). Where bytecode is
# not to be written beside the sources (PYTHONDONTWRITEBYTECODE, as in this machine's
# environment), each of them compiled gitml's modules again: ~0.2 s of CPU per process. They
# keep their bytecode in a cache outside the clone instead, keyed by each source's path and
# checked against its mtime and size as usual, so nothing is written into a checkout.
if os.environ.get("PYTHONDONTWRITEBYTECODE") and not os.environ.get("PYTHONPYCACHEPREFIX"):
    _cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    os.environ["PYTHONPYCACHEPREFIX"] = os.path.join(_cache, "gitml", "pycache")
    del os.environ["PYTHONDONTWRITEBYTECODE"]


def pytest_sessionfinish(session):
    """The bytecode of the modules tests wrote under this session's temporary folder goes with them
    (only this session's: another pytest on the machine, or a clone under /tmp, keeps its own)."""
    import shutil

    prefix = os.environ.get("PYTHONPYCACHEPREFIX")
    factory = getattr(session.config, "_tmp_path_factory", None)
    if prefix and factory is not None:
        base = os.path.realpath(factory.getbasetemp())
        shutil.rmtree(os.path.join(prefix, base.lstrip(os.sep)), ignore_errors=True)


# `python -m pytest` runs the suite on every core, up to MAX_WORKERS, with pytest-xdist (the test
# extra pins it): `-n auto --dist loadfile` unless the command line says otherwise. Set here, not
# in addopts, so that `-n 0` (or `-p no:xdist`, or a Python without xdist) still runs everything in
# one process, for debugging and `--pdb`. Whole files go to one worker (`loadfile`): a file's
# module fixtures (servers, the browser) and the session engines (Spark, Dask, Ray: one file each)
# start once, and the heaviest files are handed out first (pytest_collection_modifyitems).
MAX_WORKERS = 4


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config):
    if getattr(config.option, "numprocesses", 0) is None and not hasattr(config, "workerinput"):
        config.option.numprocesses = "auto"
        if config.option.dist == "no":
            config.option.dist = "loadfile"
            config.option.loadscopereorder = False  # in the order the workers sorted them (heaviest first)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config):
    """`-n auto`: one worker per usable core, at most MAX_WORKERS; on one core none (the suite runs
    in this process). PYTEST_XDIST_AUTO_NUM_WORKERS still decides when set."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 0 if cores < 2 else min(cores, MAX_WORKERS)


def git(cwd, *args, check=True, input_text: str | None = None) -> str:
    """Run the real git binary (tests only) and return its stdout."""
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, input=input_text)
    if check and result.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {result.stderr}")
    return result.stdout


# The fast lane is ``pytest -m "not slow"``. These files are slow as a whole (engines and
# model flavors, peer venvs, servers and long processes, scale, stress, the type check); a
# slow test elsewhere carries ``@pytest.mark.slow`` itself; every test that uses a peer
# (the ``mlflow`` marker, the MLflow or GTO venv) is slow too. All of them still run in the
# default ``pytest``.
SLOW_FILES = {
    "test_types.py",  # mypy over the package: a minute or more on 2 cores
    "test_mlflow_differential.py",
    "test_mlflow_plugin.py",
    "test_mlflow_import.py",
    "test_models_mlflow.py",
    "test_registry_gto.py",
    "test_registry_gto_reading.py",
    "test_evaluate.py",  # MLflow / GTO peers
    "test_pyfunc_spark.py",
    "test_pyfunc_dask.py",
    "test_ray_tune.py",
    "test_optuna.py",
    "test_autolog.py",  # engines
    "test_export.py",  # model export: a Docker context built and served
    "test_models.py",
    "test_serving.py",
    "test_serving_v2.py",
    "test_serving_hostile.py",  # model flavors, servers
    "test_projects.py",
    "test_examples.py",
    "test_ci_templates.py",
    "test_ui_browser.py",  # envs, scripts, a browser
    "test_stress.py",
    "test_scale.py",
    "test_read_scale.py",
    "test_refs_scale.py",
    "test_remote_scale.py",
    "test_show_scale.py",
    "test_push_proportional.py",
    "test_transfer_memory.py",  # scale and stress
    "test_long_process.py",
    "test_durability.py",
    "test_index_segments.py",
    "test_concurrency.py",
    "test_recovery.py",
    "test_temp_cleanup.py",  # processes killed and waited for
}


# And these tests of the other files, each over ~1 s in `pytest -m "not slow" --durations=0` on
# this shared 2-core machine (load ~15; about 0.3 s idle), by file and test function (all its
# parameters). The fast lane keeps the rest: ~840 tests, the broad quick coverage of every area.
# Re-measure with `--junitxml` and move a test here when it grows; tests/test_layout.py checks
# that every name here is a test that exists.
SLOW_TESTS: dict[str, set[str]] = {
    "test_artifacts.py": {"test_killed_process_keeps_logged_artifacts"},
    "test_checkout.py": {"test_switch_back_and_forth_as_git_does"},
    "test_cli.py": {
        "test_entry_point_errors_are_one_line_and_exit_1",
        "test_entry_point_stops_quietly_when_the_reader_goes_away",
        "test_recover_leaves_a_live_run_alone",
        "test_recover_marks_a_killed_run",
        "test_runs_by_experiment_name_or_id",
        "test_runs_filter",
    },
    "test_fetch_verify.py": {
        "test_fetch_refuses_hostile_refs_and_takes_the_rest",
        "test_the_check_does_not_walk_a_long_shared_history",
    },
    "test_filter.py": {"test_like_agrees_with_the_regular_expression_on_random_patterns"},
    "test_first_day.py": {"test_compare_to_a_file_without_matplotlib_says_how_to_get_charts"},
    "test_gitindex.py": {"test_a_process_that_exits_at_once_still_leaves_its_columns"},
    "test_hooks.py": {
        "test_a_failed_run_push_is_reported_and_never_blocks_the_git_push",
        "test_code_committed_in_the_work_tree_never_runs_as_gitml",
        "test_existing_hook_is_chained_with_its_input_and_verdict",
        "test_git_push_also_pushes_runs",
        "test_hooks_of_an_earlier_gitml_are_named_until_installed_again",
        "test_install_goes_where_git_looks_for_hooks",
        "test_post_merge_and_post_checkout_fetch_runs_with_a_minimal_path",
        "test_under_pre_commit_gitml_goes_in_the_legacy_hook",
    },
    "test_hostile_models.py": {
        "test_a_pickle_reached_through_a_link_is_never_unpickled",
        "test_exporting_a_teammates_registered_model_for_mlserver_never_unpickles_it",
    },
    "test_hostile_promisor.py": {
        "test_a_blob_over_the_limit_is_cut_off_with_one_line",
        "test_a_remote_that_sends_nothing_or_a_trickle_is_given_up_in_time",
    },
    "test_hostile_records.py": {
        "test_a_yaml_bomb_in_a_pulled_run_is_refused_and_the_others_stay_usable",
        "test_pull_names_a_run_with_a_hostile_manifest_and_writes_nothing_outside_the_cache",
    },
    "test_hostile_registry_metadata.py": {
        "test_a_merge_over_a_long_forged_history_with_a_hostile_merge_base_still_joins",
        "test_metadata_bombs_oversized_and_empty_records_are_refused_at_fetch",
        "test_metadata_claiming_another_models_name_is_refused_and_never_changes_a_models_uri",
    },
    "test_hostile_stores.py": {
        "test_a_committed_http_remote_is_not_contacted_before_the_clone_trusts_it",
        "test_a_committed_remote_of_a_scheme_the_clone_never_used_is_not_contacted",
        "test_a_larger_object_on_s3_is_refused_past_the_recorded_size",
        "test_a_moved_bucket_of_the_scheme_the_clone_uses_is_still_read",
        "test_committed_storage_options_on_the_users_own_scheme_are_not_contacted_either",
    },
    "test_hostile_yaml.py": {
        "test_hostile_mlproject_from_a_git_url_is_refused_before_anything_runs",
        "test_hostile_registry_policy_from_a_clone_fails_closed_naming_the_file",
    },
    "test_http_backend.py": {"test_push_and_fetch_runs_through_git_http_backend"},
    "test_index_stamp.py": {
        "test_a_tampered_stamped_snapshot_is_not_trusted",
        "test_what_other_processes_do_to_the_refs_is_seen_through_the_stamp",
    },
    "test_layout.py": {  # the checks that start Pythons; those reading the parsed package stay fast
        "test_each_cli_module_imports_first_in_a_fresh_interpreter",
        "test_every_error_class_is_reachable_from_gitml_errors",
    },
    "test_mlflow_api.py": {"test_system_tags_mlflow_sets"},
    "test_purge.py": {
        "test_a_push_during_a_two_phase_gc_keeps_the_objects_it_uses",
        "test_a_run_a_registry_tag_points_into_is_never_purged",
        "test_older_than_counts_from_the_deletion",
        "test_purge_lists_then_removes_deleted_runs_and_their_objects_only",
        "test_purge_on_the_remote_deletes_only_what_this_clone_holds",
        "test_without_a_push_the_second_phase_deletes_what_the_first_marked",
    },
    "test_push_batches.py": {
        "test_a_host_that_refuses_says_so_in_one_line_and_the_next_push_resumes",
        "test_a_push_over_the_hosts_limit_is_halved_until_the_host_takes_it",
        "test_push_batch_refs_keeps_every_push_within_the_limit",
    },
    "test_push_spans.py": {
        "test_the_loose_refs_small_pushes_leave_on_a_remote_are_packed_there",
        "test_the_short_way_ends_where_the_long_way_ends",
    },
    "test_readme.py": {"test_every_python_name_the_readme_gives_exists", "test_the_readme_tour_runs_as_written"},
    "test_registry.py": {"test_push_carries_registry_tags_with_their_runs_and_fetch_brings_them"},
    "test_registry_gates.py": {
        "test_a_branch_that_weakens_the_gates_changes_nothing",
        "test_a_dataset_gate_judges_the_model_on_the_policys_data_not_the_runs_claims",
        "test_a_dataset_gate_never_unpickles_an_unsigned_candidate",
        "test_a_failing_gate_fails_the_check_and_apply_and_promote_refuse_it",
        "test_a_trusted_signer_overrides_with_force_and_the_tag_says_so",
        "test_check_passes_and_apply_promotes_when_every_gate_passes",
        "test_force_by_an_untrusted_or_no_signature_is_refused",
        "test_the_metrics_judged_are_the_runs_as_registered",
    },
    "test_registry_metadata.py": {"test_metadata_travels_by_push_and_fetch_and_joins_when_edited_in_two_clones"},
    "test_registry_signing.py": {"test_ssh_signed_tags_verify_in_git_and_under_the_policy"},
    "test_registry_trust.py": {
        "test_a_branch_that_drops_the_policy_changes_nothing_for_the_victim",
        "test_a_policy_change_on_the_trusted_ref_waits_for_the_clone_to_accept_it",
        "test_a_second_registration_of_the_production_commit_does_not_take_over_the_stage",
        "test_a_stage_list_guards_deregister_and_deprecate_and_the_writer_refuses_them_unsigned",
        "test_a_trusted_tag_object_re_pointed_under_another_name_is_refused",
        "test_an_ignored_tag_with_an_outsized_counter_does_not_block_promotion",
        "test_check_never_unpickles_a_candidate_that_does_not_verify_under_the_base_policy",
        "test_ssh_a_branch_that_adds_its_own_signer_and_a_re_pointed_tag_are_ignored_in_the_ui",
        "test_the_trusted_ref_can_be_configured_and_a_missing_one_fails_closed",
        "test_unsigned_register_deregister_deprecate_and_unassign_change_nothing",
    },
    "test_remote.py": {
        "test_fetch_fast_forwards_and_leaves_diverged_runs",
        "test_fetch_of_an_updated_run_brings_only_its_new_commit",
        "test_fetch_of_runs_on_top_from_a_gc_packed_remote",
        "test_non_fast_forward_push_refused_unless_forced_and_delete",
        "test_push_of_several_mebibytes_over_every_transport",
        "test_push_over_the_network_does_not_walk_a_long_shared_history",
        "test_push_runs_and_git_reads_them",
        "test_push_sends_what_git_would_send",
    },
    "test_remote_safety.py": {
        "test_push_to_a_frozen_s3_server_fails_in_bounded_time",
        "test_reads_from_an_unconfirmed_committed_remote_work",
        "test_s3_listing_is_only_the_object_layout",
    },
    "test_repo_formats.py": {
        "test_client_and_cli_refuse_and_leave_the_repository_untouched",
        "test_local_push_and_fetch_refuse_a_repository_of_another_format",
    },
    "test_report.py": {
        "test_hostile_run_names_stay_text",
        "test_registry_check_and_compare_of_a_hostile_pull_request_are_inert",
    },
    "test_run_identity.py": {
        "test_a_known_id_under_another_experiment_is_refused_and_the_rest_arrives",
        "test_a_later_commit_rewriting_what_never_changes_in_a_run_is_refused",
        "test_an_id_two_refs_claim_anyway_is_an_error_for_every_reader",
        "test_an_unrelated_history_at_the_same_ref_is_refused_even_with_force",
        "test_gitml_pull_names_the_impostor_and_show_load_and_runs_uri_keep_the_genuine_run",
        "test_the_same_run_advanced_or_written_on_in_two_places_still_arrives",
        "test_two_refs_bringing_one_new_id_are_both_refused",
    },
    "test_search.py": {"test_index_sees_runs_written_by_another_process"},
    "test_search_runs.py": {"test_search_runs_reads_no_record_the_index_has_a_row_of"},
    "test_sync.py": {
        "test_experiment_created_in_two_clones_is_joined_not_stuck",
        "test_fetch_is_lazy_and_downloads_on_first_access",
        "test_gc_drops_unreferenced_cache_and_lists_remote_before_deleting",
        "test_http_remote_is_read_only_and_verified",
        "test_local_transfer_handles_git_gc_packs_and_increments",
        "test_malformed_refs_from_the_remote_do_not_break_the_others",
        "test_pull_from_an_unreachable_artifact_remote_says_it_once",
        "test_push_and_fetch_take_a_plain_client",
        "test_push_from_a_shallow_clone_to_an_empty_remote_says_why",
        "test_push_selection_errors_are_plain",
        "test_push_shows_progress_on_a_terminal",
        "test_push_then_clone_and_pull_gives_runs_with_artifacts",
        "test_remote_gc_never_deletes_what_others_may_reference",
        "test_s3_remote_round_trip",
        "test_selective_push",
        "test_tampered_remote_object_is_refused",
        "test_unreachable_remotes",
    },
    "test_tracking.py": {
        "test_a_new_run_reaches_the_repository_long_before_the_flush_interval",
        "test_flush_interval_commits_while_running",
        "test_long_run_history_grows_with_points_not_flushes",
        "test_runs_from_a_linked_worktree_land_in_the_common_repository",
        "test_untracked_entry_script_is_named_and_warned",
    },
    "test_transfer.py": {
        "test_a_damaged_pack_is_never_copied_to_a_local_remote",
        "test_concurrent_local_pushes_both_land",
    },
    "test_transfer_speed_paths.py": {
        "test_a_large_received_blob_is_hashed_as_it_inflates_not_held_whole",
        "test_a_loose_object_that_inflates_beyond_its_header_is_damaged_not_read_whole",
        "test_a_received_object_that_inflates_beyond_its_header_is_refused_in_bounded_memory",
        "test_a_stored_entry_that_inflates_beyond_its_header_is_damaged_not_read_whole",
        "test_entries_read_from_a_pack_are_not_counted_in_the_processs_memory",
    },
    "test_ui.py": {
        "test_a_first_visit_gets_default_columns_and_keys_in_one_request",
        "test_a_malformed_filter_is_a_400_naming_its_position",
        "test_a_running_run_is_seen_live",
        "test_a_search_is_kept_until_a_run_changes",
        "test_artifact_paths_cannot_leave_the_run",
        "test_compare_marks_differences_and_deltas",
        "test_every_page_and_api_route_answers",
        "test_gitml_ui_serves_the_repository",
        "test_groups_give_a_mean_line_and_a_min_max_band",
        "test_host_header_allow_list",
        "test_hostile_names_params_and_tags_are_text",
        "test_html_and_svg_artifacts_are_downloads_never_pages",
        "test_no_route_writes",
        "test_previews_csv_json_mlmodel_and_large_text_in_part",
        "test_runs_api_pages_sorts_and_filters_with_or_and_parentheses",
        "test_search_columns_gives_search_rows_by_column",
        "test_security_headers_on_pages",
        "test_series_keeps_the_spike_and_a_zoom_asks_for_its_range",
    },
    "test_ui_histories.py": {
        "test_a_damaged_or_forged_cache_file_is_ignored_and_rebuilt",
        "test_a_read_only_cache_folder_only_costs_the_parse",
        "test_a_running_run_parses_only_its_new_and_rewritten_chunks",
        "test_a_second_server_loads_the_parsed_chunks_and_parses_none",
        "test_a_small_history_is_parsed_each_time_not_kept",
        "test_chunk_ids_and_cache_names_are_checked",
        "test_warm_up_keeps_the_newest_runs_long_histories",
    },
    "test_ui_hostile.py": {
        "test_a_costly_search_is_cut_at_its_budget_while_other_requests_are_answered",
        "test_a_pathological_like_pattern_is_answered_and_right",
    },
    "test_ui_registry.py": {
        "test_a_newly_committed_policy_shows_without_a_restart",
        "test_model_page_versions_stages_signers_and_history",
        "test_models_list_shows_latest_versions_and_stages",
        "test_registry_pages_escape_what_tags_and_runs_hold",
        "test_unknown_and_invalid_model_names",
    },
    "test_unpack.py": {
        "test_damaged_packs_are_refused_and_nothing_is_stored",
        "test_thin_pack_takes_its_bases_from_the_repository",
        "test_thin_pack_without_its_bases_is_refused",
    },
    "test_worktree.py": {
        "test_assume_unchanged_and_skip_worktree_are_taken_from_the_index",
        "test_snapshot_equals_git_for_every_index_format",
        "test_tree_changes_reads_only_differing_subtrees",
    },
}


# Under xdist (`--dist loadfile`) each worker takes the next file when it is done with one: these
# files, the longest of the whole run (minutes each), go first, longest first, so that no worker is
# left with one of them at the end while the others are idle. Measured with
# `python -m pytest --junitxml=run.xml` (the time of each file's tests summed: the files over
# 80 s); the rest keep their order. tests/test_layout.py checks that each name is a test file.
HEAVIEST_FIRST = (
    "test_autolog.py",  # 380 s of tests on a machine at load ~16 (2 workers)
    "test_mlflow_import.py",  # 290 s
    "test_flavors_mlflow.py",  # 215 s
    "test_registry_gto_reading.py",  # 190 s
    "test_models_mlflow.py",  # 130 s
    "test_stress.py",
    "test_ci_templates.py",
    "test_projects.py",
    "test_many_writers.py",
    "test_mlflow_plugin.py",
    "test_concurrency.py",
    "test_temp_cleanup.py",
    "test_examples.py",
    "test_ci_clones.py",
    "test_remote.py",
    "test_evaluate.py",  # 85 s
)


def pytest_collection_modifyitems(config, items):
    for item in items:
        peers = {"mlflow_python", "gto_python"} & set(getattr(item, "fixturenames", ()))
        name = os.path.basename(str(item.fspath))
        if (
            name in SLOW_FILES
            or getattr(item, "originalname", item.name) in SLOW_TESTS.get(name, ())
            or item.get_closest_marker("mlflow")
            or peers
        ):
            item.add_marker(pytest.mark.slow)
    if hasattr(config, "workerinput"):  # an xdist worker: the heaviest files are handed out first
        first = {name: i for i, name in enumerate(HEAVIEST_FIRST)}
        items.sort(key=lambda item: first.get(os.path.basename(str(item.fspath)), len(first)))  # stable


def pytest_collection_finish(session):
    """Build the peer venvs (MLflow, GTO) the collected tests use before the first test runs:
    an install takes minutes once per machine, and no test's timeout may cut it short. A failed
    install is reported here in one line; the tests that need the peer then fail with its reason."""
    from tests.peer_venv import FAILED

    wanted = {name for item in session.items for name in getattr(item, "fixturenames", ())}
    peers = [
        ("gto_python", "GITML_SKIP_GTO", "tests.gto_venv", "ensure_gto_python"),
        ("mlflow_python", "GITML_SKIP_MLFLOW", "tests.mlflow_venv", "ensure_mlflow_python"),
        ("mlserver_python", "GITML_SKIP_MLSERVER", "tests.mlserver_venv", "ensure_mlserver_python"),
    ]
    for fixture, skip, module, ensure in peers:
        if fixture in wanted and os.environ.get(skip) != "1":
            import importlib

            try:
                getattr(importlib.import_module(module), ensure)()
            except RuntimeError:
                print(f"\n{FAILED.get(fixture.split('_')[0], 'peer install failed').splitlines()[0]}", file=sys.stderr)


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    for name in ("GITML_REPO", "GITML_RUN_ID", "GITML_EXPERIMENT_NAME", "GITML_EXPERIMENT_ID", "GITML_FLUSH_INTERVAL"):
        monkeypatch.delenv(name, raising=False)
    for name in ("CI", "GITHUB_ACTIONS", "GITLAB_CI"):  # runs logged by the suite in CI get no CI tags
        monkeypatch.delenv(name, raising=False)
    for name in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL"):
        monkeypatch.delenv(name, raising=False)
    (home / ".gitconfig").write_text(
        "[user]\n\tname = Test User\n\temail = test@example.com\n[init]\n\tdefaultBranch = main\n"
    )
    yield
    import gitml.fluent as fluent

    stack = getattr(fluent._state, "stack", None)
    if stack:
        stack.clear()
    fluent.set_tracking_uri(None)
    fluent._experiment_id = None


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A git repository with one commit (train.py), as the current directory."""
    path = tmp_path / "project"
    path.mkdir()
    git(path, "init", "-q")
    (path / "train.py").write_text("print('training')\n")
    (path / "README.md").write_text("# project\n")
    git(path, "add", ".")
    git(path, "commit", "-qm", "initial")
    monkeypatch.chdir(path)
    return path


@pytest.fixture
def client(repo):
    import gitml.ops

    c = gitml.ops.Operations(repo)
    yield c
    c.close()


def run_python(code: str, cwd, env=None, check=True) -> subprocess.CompletedProcess:
    """Run Python code in a fresh interpreter with gitml importable."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = ROOT + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.update(env or {})
    result = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=full_env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"python failed ({result.returncode}): {result.stderr}")
    return result


@pytest.fixture(scope="session")
def installed_python(tmp_path_factory) -> str:
    """A Python with this checkout's gitml *installed*: a virtualenv over this Python's
    packages whose site-packages names this checkout in a ``.pth`` file. Hooks and CI
    scripts run gitml in isolated mode (``python -I``, which ignores PYTHONPATH), so through
    this Python they run the code under test, not whatever gitml the machine has installed."""
    venv = tmp_path_factory.mktemp("installed") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    site = subprocess.run(
        [python, "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    with open(os.path.join(site, "gitml-under-test.pth"), "w") as f:
        f.write(ROOT + "\n")
    found = subprocess.run(
        [python, "-I", "-c", "import gitml; print(gitml.__file__)"], cwd="/", check=True, capture_output=True, text=True
    ).stdout.strip()
    assert found == os.path.join(ROOT, "gitml", "__init__.py"), found
    return python


# -- engines: one of each per test session (a SparkSession starts a JVM: ~10-30 s here) -------
# Engine workers import this checkout's gitml, and the test modules (models pickled by reference
# to a class of a test module, which pytest imports by its bare name from its folder, tests/<area>/)
_TESTS = os.path.join(ROOT, "tests")
_ENGINE_PATH = os.pathsep.join(
    [ROOT, _TESTS]
    + sorted(
        os.path.join(_TESTS, n)
        for n in os.listdir(_TESTS)
        if os.path.isdir(os.path.join(_TESTS, n, "")) and n != "data"
    )
)


@pytest.fixture(scope="session")
def spark():
    """A local SparkSession with 2 cores; its Python workers run this Python with this checkout's
    gitml importable (as a cluster's executors would have gitml installed)."""
    saved = {k: os.environ.get(k) for k in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON")}
    os.environ["PYSPARK_PYTHON"] = os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("gitml-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.executorEnv.PYTHONPATH", _ENGINE_PATH + os.pathsep + os.environ.get("PYTHONPATH", ""))
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def dask_client():
    """A dask.distributed LocalCluster of 2 worker processes (one thread each), on loopback."""
    from dask.distributed import Client, LocalCluster

    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = _ENGINE_PATH + os.pathsep + (saved or "")  # the workers import this checkout's gitml
    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None, memory_limit="1GiB"
    )
    client = Client(cluster)
    yield client
    client.close()
    cluster.close()
    if saved is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = saved


@pytest.fixture(scope="session")
def ray_local():
    """Ray on this machine with 2 CPUs (``ray.init(num_cpus=2)``), no dashboard."""
    import ray

    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = _ENGINE_PATH + os.pathsep + (saved or "")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()
    if saved is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = saved
