"""ftwb-light: for light terminal backgrounds."""
from textual.theme import Theme

THEME = Theme(
    name="ftwb-light",
    primary="#005F87",
    secondary="#5F5FAF",
    accent="#AF5F00",
    warning="#AF8700",
    error="#D70000",
    success="#008700",
    foreground="#1C1C1C",
    background="#F5F5F5",
    surface="#FFFFFF",
    panel="#E4E4E4",
    dark=False,
    variables={"train-color": "#005F87", "val-color": "#AF5F00", "best-color": "#008700"},
)
