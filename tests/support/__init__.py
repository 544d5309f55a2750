"""Helpers shared by the tests (import them from here, never from conftest): paths of the fixtures,
subscriber populations, worker processes, waiting for a state with a deadline."""
