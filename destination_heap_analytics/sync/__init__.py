"""The one sync runner that `write` and `preview` share: routes per stream, the state gate,
the dry run as a choice of delivery, and the lines the sync logs."""
