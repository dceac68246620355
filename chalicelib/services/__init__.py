"""Decisions: services take their collaborators as arguments and never read the environment."""
