"""Experiment tracking: runs, experiments, the journal, search."""
