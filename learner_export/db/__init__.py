"""The database as the service uses it: the pool, `db migrate`, and connection diagnosis."""

from learner_export.db.migrate import SCHEMA, migrate
from learner_export.db.pool import connect, create_pool

__all__ = ["SCHEMA", "connect", "create_pool", "migrate"]
