"""Test doubles and helpers shared by the test suite (named as doubles; never shipped)."""
