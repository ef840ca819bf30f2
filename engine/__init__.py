"""ftwb's engine: data, models and training. Never imports textual or tui/."""
__version__ = "0.1.0"
