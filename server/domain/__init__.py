"""Pure rules of the server: no I/O, no threads, no clock (``now`` is always an argument)."""
