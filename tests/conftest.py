import pytest
from book_site import build_site


@pytest.fixture(scope="session")
def site():
    """The built site, built once for every test that needs it (the build and the browser tests)."""
    return build_site()
