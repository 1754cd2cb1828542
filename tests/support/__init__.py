"""Helpers for the test suite: databases, real services, builders."""
