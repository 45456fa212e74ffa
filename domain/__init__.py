"""Pure domain model: aggregates, events, rules and resolution.

Nothing here performs I/O or imports a database driver, Kafka client or web framework;
``eventsourcing.domain`` is the library's pure aggregate base.
"""
