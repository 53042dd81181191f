"""Recipes: one file per loop, read top to bottom (setup, loop, save)."""
