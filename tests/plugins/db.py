"""pytest fixtures for db (registered in conftest.py through pytest_plugins)."""
