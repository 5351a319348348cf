"""The Airbyte side: the commands (`spec`, `check`, `discover`, `write`, `preview`), how the
config file and stdin are read, and how a run ends (exit codes, signals, the trace message)."""
