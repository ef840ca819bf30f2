"""ftwb's Textual themes: dark, light, and one built from the xterm 256-colour palette."""
from themes.ftwb_256 import THEME as FTWB_256
from themes.ftwb_dark import THEME as FTWB_DARK
from themes.ftwb_light import THEME as FTWB_LIGHT

THEMES = (FTWB_DARK, FTWB_LIGHT, FTWB_256)
NAMES = tuple(t.name for t in THEMES)
