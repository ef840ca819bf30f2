"""ftwb's Textual app. Must stay cheap to import: no torch and friends at start-up."""
