"""Scoring a dataset: J&F and identity metrics against ground truth or a reference run."""
