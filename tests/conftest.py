"""Fixtures shared by every test tier. Tier-specific fixtures live beside their tests."""
