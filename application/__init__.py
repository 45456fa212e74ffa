"""The application layer: load, decide, save."""
