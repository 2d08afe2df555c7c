"""The shipped experiment files, installed as the package `infoae_configs` (pyproject.toml), so
that `infoae-search` runs `quick.yaml` (and `search configs/NAME.yaml`) with no clone present
(`run_search.shipped`)."""
