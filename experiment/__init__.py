"""The experiment file: one validated `Experiment` per YAML file (docs/ARCHITECTURE.md)."""
