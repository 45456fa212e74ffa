"""The Faust stream workers: attribute evaluations, window them, guard rollouts, alert.

Two stages, because evaluations are keyed by tenant while a rollout's guard needs every tenant:
stage 1 (``attribute``) decodes and validates each batch of evaluations on the tenant-keyed
partitions, attributes them to rollout arms and folds them into per-batch partial aggregates;
stage 2 (``guard``) receives those partials keyed by scope (a rollout, or a task release),
merges them into time buckets kept in a changelogged Faust table, and evaluates guard and alert
rules as each partial arrives. Pre-aggregating before the repartition sends a handful of
partials per batch instead of every evaluation.
"""
