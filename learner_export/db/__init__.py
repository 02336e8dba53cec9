"""The database as the service uses it: the pool, `db migrate` (learner_export.db.migrate, not
imported here: it imports the contract, which imports errors, which imports diagnose), and
connection diagnosis."""

from learner_export.db.pool import connect, create_pool

__all__ = ["connect", "create_pool"]
