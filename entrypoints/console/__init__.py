"""The operator console: one web page served by the API process at ``/console``."""
