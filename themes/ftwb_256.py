"""ftwb-256: every colour is an xterm 256-palette entry, so nothing shifts when
COLORTERM is lost over SSH and the terminal falls back to 256 colours."""
from textual.theme import Theme

# xterm-256 indices in comments: the hex values are the palette's exact RGB.
THEME = Theme(
    name="ftwb-256",
    primary="#5fafd7",     # 74
    secondary="#af87d7",   # 140
    accent="#ffaf5f",      # 215
    warning="#ffd75f",     # 221
    error="#ff5f5f",       # 203
    success="#87d787",     # 114
    foreground="#d0d0d0",  # 252
    background="#121212",  # 233
    surface="#1c1c1c",     # 234
    panel="#303030",       # 236
    boost="#3a3a3a",       # 237
    dark=True,
    variables={"train-color": "#5fafd7", "val-color": "#ffaf5f", "best-color": "#87d787"},
)
