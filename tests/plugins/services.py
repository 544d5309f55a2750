"""pytest fixtures for services (registered in conftest.py through pytest_plugins)."""
