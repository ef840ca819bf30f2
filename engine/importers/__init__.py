"""Importers of other tools' training configs (Axolotl, LLaMA-Factory) onto ftwb's RunConfig.

`engine.config_import` is the entry point; this package holds the per-tool mappings
(`axolotl`, `llamafactory`), the bookkeeping every mapping shares (`mapper`) and the
recognition of files that are not training configs at all (`kinds`). Plain Python.
"""
