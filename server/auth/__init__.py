"""Operators, sessions, API tokens and roles, as FastAPI dependencies (``deps``)."""
