"""Airbyte's messages as the connector keeps them: a STATE exactly as the platform sent it (its
raw line, validated by `json_spans`), and the destination catalog `discover` prints."""
