"""detect package (see docs/architecture.md)."""
