"""Widgets of the Runs screen: evaluation results, worst examples, lineage, export dialog."""
