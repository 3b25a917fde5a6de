"""engine package (see docs/architecture.md)."""
