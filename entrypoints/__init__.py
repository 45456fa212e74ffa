"""Entry points: the CLI, the HTTP API and the demo; the top layer, wired by infra.bootstrap."""
