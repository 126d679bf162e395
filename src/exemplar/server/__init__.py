"""The labeling server: a versioned JSON API (``/api/v1``) and web pages built on it."""

from exemplar.server.app import create_app

__all__ = ["create_app"]
