import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ALIGNKIT_STRICT_PLUGINS", "1")  # a plugin that fails to load fails the tests

pytest_plugins = ["alignkit.core.testing"]  # fixtures and the contract suites for plugin authors
