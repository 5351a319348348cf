"""Which stream a record belongs to, which mapping it takes (the config's `api` and `streams`, or
Airbyte's data-activation catalog), and how its data becomes one Heap item."""
