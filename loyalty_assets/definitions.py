"""The code location as a module-level `defs`, for `dg` (`[tool.dg.project]` in pyproject.toml).

`dg dev`, `dg launch`, `dg check defs` and `dg list defs` load this module; the `dagster` CLI and
`workspace.yaml` load the top-level `definitions.py`. Both build the same `build_definitions()`.
"""

from loyalty_assets.defs.definitions import build_definitions

defs = build_definitions()
