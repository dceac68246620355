"""Application code deployed to Lambda beside ``app.py``."""
