import pytest


def pytest_collection_modifyitems(items):
    """Everything under tests/integration needs the real broker: mark it so `-m "not integration"` works."""
    for item in items:
        if "/integration/" in str(item.path):
            item.add_marker(pytest.mark.integration)
