"""report package (see docs/architecture.md)."""
