"""backends package (see docs/architecture.md)."""
