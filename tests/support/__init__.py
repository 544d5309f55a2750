"""Helpers shared by the tests (import them from here, never from conftest): paths of the fixtures,
subscriber populations, worker processes, waiting for a state with a deadline."""

import pytest

# the checks the ordinary and the real-world test modules share: plain asserts with pytest's messages
pytest.register_assert_rewrite("support.issue_checks")
