"""Test support kept out of the package: the tiny model and the JS tests' artifacts (importable as ``support``
with tests/ on the path: pytest puts it there, the JS scripts run Python from tests/)."""
