"""The optimizer service."""
