"""Edges: Kafka, PostgreSQL, HTTP API, CLI, Prometheus."""
