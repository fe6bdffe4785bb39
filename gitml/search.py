"""Searching runs and experiments: MLflow's ``search_runs`` (Run objects, paged) and
``search_experiments`` (the fluent ``search_runs``' DataFrame is :mod:`gitml.ops`').

A mixin of :class:`gitml.Client`, kept beside it so ``client.py`` stays small. A
search reads the search index (:mod:`gitml.runlog.index`): the matching runs'
Run objects are built from its rows, not from the run records in git.

>>> page = client.search_runs(["1"], "metrics.auc > 0.9", max_results=50)
>>> more = client.search_runs(["1"], "metrics.auc > 0.9", max_results=50, page_token=page.token)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gitml.errors import ExperimentNotFoundError, InvalidInputError
from gitml.runlog.entities import Experiment, ViewType
from gitml.runlog.search import PagedList, page_offset, search_table
from gitml.runlog.search import page_token as token_at

if TYPE_CHECKING:
    from gitml.runlog.tracker import Tracker


class Search:
    """Searches; ``Client`` provides ``tracker`` and ``get_experiment_by_name``."""

    tracker: Tracker

    def get_experiment_by_name(self, name: str) -> Experiment | None:  # pragma: no cover - Client's replaces it
        """The experiment named ``name``, or None.

        Args:
            name: the experiment's name.

        Returns:
            The :class:`Experiment`, or None when no experiment has that name.

        >>> client.get_experiment_by_name("churn")
        """
        raise NotImplementedError

    def search_experiments(
        self,
        view_type: int = ViewType.ACTIVE_ONLY,
        max_results: int | None = None,
        filter_string: str | None = None,
        order_by: list[str] | None = None,
    ) -> list[Experiment]:
        """Experiments matching ``filter_string`` (MLflow's experiment grammar: ``name``,
        ``experiment_id``, ``creation_time``, ``last_update_time``, ``tags.<key>``; plus
        OR and parentheses), in ``order_by`` order (default: newest first).

        Args:
            view_type: ``ViewType.ACTIVE_ONLY`` (default), ``DELETED_ONLY`` or ``ALL``.
            max_results: at most this many (default: all).
            filter_string: the filter (default: none).
            order_by: e.g. ``["name ASC"]``.

        Returns:
            A list of :class:`Experiment`.

        Raises:
            FilterSyntaxError: a filter or order that does not parse.
            InvalidInputError: a negative ``max_results``.

        >>> client.search_experiments(filter_string="name LIKE 'churn%'")
        """
        from gitml.runlog.search import search_experiments

        return search_experiments(self.tracker.experiments.all(view_type), filter_string, order_by, max_results)

    def search_runs(
        self,
        experiment_ids: list[str] | str | None = None,
        filter_string: str = "",
        run_view_type: int = ViewType.ACTIVE_ONLY,
        max_results: int = 1000,
        order_by: list[str] | None = None,
        page_token: str | None = None,
        *,
        experiment_names: list[str] | None = None,
    ) -> PagedList:
        """Runs matching ``filter_string`` (MLflow's grammar, plus OR and parentheses), as
        MlflowClient returns them, read from the search index.

        Args:
            experiment_ids: one id or a list (None, without ``experiment_names``: every experiment).
            filter_string: e.g. ``"metrics.auc > 0.9 AND params.lr = '0.1'"``.
            run_view_type: ``ViewType.ACTIVE_ONLY`` (default), ``DELETED_ONLY`` or ``ALL``.
            max_results: the page's size (default 1,000).
            order_by: e.g. ``["metrics.auc DESC"]``.
            page_token: the ``token`` of the previous page.
            experiment_names: experiments by name, besides ``experiment_ids``.

        Returns:
            A :class:`PagedList` of :class:`Run`, whose ``token`` is the next page's (None on the last).

        Raises:
            FilterSyntaxError: a filter or order that does not parse.
            ExperimentNotFoundError: a name no experiment has.
            InvalidInputError: a bad ``max_results`` or ``page_token``.

        >>> page = client.search_runs(["1"], "metrics.auc > 0.9", max_results=50)
        """
        found = self._search_run_commits(
            experiment_ids,
            filter_string,
            run_view_type,
            max_results,
            order_by,
            page_token,
            experiment_names=experiment_names,
        )
        return PagedList(self.tracker.runs_at(found), found.token)

    def _search_run_commits(
        self,
        experiment_ids: list[str] | str | None = None,
        filter_string: str = "",
        run_view_type: int = ViewType.ACTIVE_ONLY,
        max_results: int = 1000,
        order_by: list[str] | None = None,
        page_token: str | None = None,
        *,
        experiment_names: list[str] | None = None,
    ) -> PagedList:
        """:meth:`search_runs`, as the ``(run ref, commit)`` pairs of the runs it finds: a run's
        commit names its content, so a caller that keeps what it built of a run (the MLflow
        plugin, through ``Operations.search_run_commits``) rebuilds only the runs whose commit it
        has not seen. Same arguments, errors and ``token``."""
        if not isinstance(max_results, int) or max_results < 0:
            raise InvalidInputError(f"max_results must be an integer >= 0, not {max_results!r}")
        offset = page_offset(page_token)
        ids = self._resolve_experiment_ids(experiment_ids, experiment_names)
        with self.tracker.index.reading():
            table, matched = search_table(
                self.tracker,
                ids,
                filter_string,
                view=run_view_type,
                max_results=offset + max_results + 1,
                order_by=order_by,
            )
        page = matched[offset : offset + max_results]
        token = token_at(offset + max_results) if len(matched) > offset + max_results else None
        return PagedList([(table.refs[i], table.commits[i]) for i in page], token)

    def _resolve_experiment_ids(
        self, experiment_ids: list[str] | str | None, experiment_names: list[str] | None = None
    ) -> list[str] | None:
        """The ids of ``experiment_ids`` (one or a list) and of the experiments named
        ``experiment_names``; None (every experiment) when both are empty. Raises
        ExperimentNotFoundError for a name no experiment has."""
        if isinstance(experiment_ids, (str, int)):
            experiment_ids = [experiment_ids]
        ids = [str(i) for i in experiment_ids or []]
        for name in experiment_names or []:
            experiment = self.get_experiment_by_name(name)
            if experiment is None:
                raise ExperimentNotFoundError(name)
            ids.append(experiment.experiment_id)
        return ids if (experiment_ids or experiment_names) else None
