"""ECS field catalogue shared by ingest, engine and detector. Imports nothing from dplogs."""

from dplogs.schema.ecs import (
    ALIASES,
    DEFAULT_PRIVACY_UNIT,
    FIELDS,
    IDENTITY_FIELDS,
    READABLE_SCHEMA_VERSIONS,
    SCHEMA_VERSION,
    STORE_SCHEMA,
    TIMESTAMP,
    Field,
    conform,
    is_list,
)

__all__ = [
    "ALIASES",
    "DEFAULT_PRIVACY_UNIT", "FIELDS", "IDENTITY_FIELDS", "READABLE_SCHEMA_VERSIONS", "SCHEMA_VERSION", "STORE_SCHEMA",
    "TIMESTAMP", "Field", "conform", "is_list",
]
