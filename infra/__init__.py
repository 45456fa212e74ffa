"""Configuration, wiring (one bootstrap) and the embedded stack launcher."""
