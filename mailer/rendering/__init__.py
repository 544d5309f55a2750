"""Rendering: an issue file -> per-segment email renderings (pure but for reading templates)."""
