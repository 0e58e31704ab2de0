"""query_service."""
