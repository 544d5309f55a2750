"""pytest fixtures for browser (registered in conftest.py through pytest_plugins)."""
