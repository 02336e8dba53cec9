"""The SQL the service ships, as package data: numbered migrations (tables, append-only), the
lockdown (grants, re-applied at every migrate), the model adapters, and the sample schema with
its demo-data generator. Read with importlib.resources, so an installed wheel finds them."""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable

SQL: Traversable = files(__name__)
MIGRATIONS = SQL / "migrations"
LOCKDOWN = SQL / "lockdown.sql"
SAMPLE_ADAPTER = SQL / "adapters" / "sample.sql"
SUPABASE_ADAPTER = SQL / "adapters" / "supabase.sql"
SAMPLE_SCHEMA = SQL / "sample" / "schema.sql"
DEMO_DATA = SQL / "sample" / "demo_data.sql"


def migration_files() -> list[Traversable]:
    """The numbered migrations, in the order they run."""
    return sorted(
        (f for f in MIGRATIONS.iterdir() if f.name[:1].isdigit() and f.name.endswith(".sql")),
        key=lambda f: f.name,
    )


def read(resource: Traversable) -> str:
    return resource.read_text(encoding="utf-8")
