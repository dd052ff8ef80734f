"""The ``cbm`` command line."""
