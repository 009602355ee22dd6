# Only registers plugins. The harness (ecs_verdict, installed from src/ by requirements.txt) loads itself
# through its pytest11 entry point; plugins/ is CivicForge's suite plugin; pytester serves tests/.
pytest_plugins = ["plugins.fixtures", "pytester"]
