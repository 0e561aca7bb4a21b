"""ringleader registry package."""
