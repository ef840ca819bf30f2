"""Widgets of the Data screen (the dataset workbench), one per file."""
