# Only registers plugins; all code lives in plugins/. (pytester serves the harness's own tests in tests/.)
pytest_plugins = ["plugins.fixtures", "plugins.reporting", "plugins.smoke_plugin", "plugins.civicforge.fixtures", "pytester"]
