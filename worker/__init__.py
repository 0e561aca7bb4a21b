"""ringleader worker package."""
