"""ringleader coordinator package."""
