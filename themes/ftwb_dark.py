"""ftwb-dark: the default on truecolor terminals."""
from textual.theme import Theme

THEME = Theme(
    name="ftwb-dark",
    primary="#5FAFD7",
    secondary="#AF87D7",
    accent="#FFAF5F",
    warning="#FFD75F",
    error="#FF5F5F",
    success="#87D787",
    foreground="#D0D0D0",
    background="#1C1C1C",
    surface="#262626",
    panel="#303030",
    dark=True,
    variables={"train-color": "#5FAFD7", "val-color": "#FFAF5F", "best-color": "#87D787"},
)
