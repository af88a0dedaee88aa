import pytest


@pytest.fixture(autouse=True)
def _private_results_cache(tmp_path_factory, monkeypatch):
    # Tests must neither read nor fill the user's real results cache.
    monkeypatch.setenv("COSTMODEL_CACHE", str(tmp_path_factory.mktemp("cache") / "results.sqlite"))
