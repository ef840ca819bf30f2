"""Screens: one file each (Data, Config, Train, Runs) plus the help and quit dialogs."""
