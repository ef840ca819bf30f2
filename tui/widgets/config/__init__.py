"""Widgets of the Config screen: field rows, the memory bar, and its dialogs."""
