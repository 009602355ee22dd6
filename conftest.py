# Only registers the harness's plugins; all code lives in plugins/.
pytest_plugins = ["plugins.smoke_plugin"]
