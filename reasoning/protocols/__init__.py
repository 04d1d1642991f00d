"""Thread protocols: the markup with which a model forks and joins, parsed and rendered."""
