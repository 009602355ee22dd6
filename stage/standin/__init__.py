"""The local stand-in of the CivicForge board service (one process per ECS "task").

``db`` prepares the shared SQLite database without importing FastAPI;
``app`` builds the FastAPI app; ``python -m stage.standin`` runs one task.
"""
