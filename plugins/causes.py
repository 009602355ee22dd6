"""CivicForge's own causes and next steps: what the generic harness cannot know about the board service.

The harness diagnoses ECS, tasks, health, HTTP, image and app evidence generically; this profile
(returned by ``pytest_smoke_suite`` in ``plugins.fixtures``) adds the board's causes from the team's
runbook (``shared/deployment-lessons.md``) and CivicForge's own commands for a generic cause.
"""

from __future__ import annotations

from contracts.errors import MISSING_BOARD_OWNER
from ecs_verdict.suite import SuiteCause, SuiteProfile

SUITE_NAME = "CivicForge board"
METRICS_NAMESPACE = "CivicForge/Smoke"
DEFAULT_BOARD_ID = "board_001"
MIGRATIONS_COMMAND = "python -m src.board_mvp.migrations_pg"

# Runbook lesson 3: without an owner nobody can invite or manage members, and the owner account is refused
# everywhere: its 403s and the other owner checks on that task are this one cause, not violations of their own.
MISSING_OWNER = SuiteCause(
    category=MISSING_BOARD_OWNER,
    title="No board owner exists: the owner bootstrap in migrations did not run",
    next_step=f"Re-run migrations (`{MIGRATIONS_COMMAND}`) after an Organizer exists so the earliest one becomes "
              f"owner of {DEFAULT_BOARD_ID}; look for 'Added user <id> as board owner' in the logs.",
    absorbs_statuses=(403,),
    absorbs_checks="owner",
)

CIVICFORGE_PROFILE = SuiteProfile(
    name=SUITE_NAME,
    metrics_namespace=METRICS_NAMESPACE,
    causes=(MISSING_OWNER,),
    next_steps={
        # Runbook lesson 2, with CivicForge's own entrypoint and the line its migrations log when done.
        "migrations_not_applied": "Run migrations before the app starts: ENTRYPOINT a docker-entrypoint.sh "
        f"(chmod +x) running `{MIGRATIONS_COMMAND}` then `exec uvicorn ...`; look for 'Migrations complete!' in "
        "the start-up logs.",
        "smoke_accounts": "Fix the smoke accounts: set SMOKE_OWNER_*/SMOKE_PARTICIPANT_* or --smoke-secret holding "
        '{"owner": {"username", "password"}, "participant": {...}}, and check the passwords still log in.',
        "permission_regression": "Do not ship: check the role permission table (ROLE_PERMISSIONS) and the auth "
        "dependency of the route, then redeploy the previous task definition until it is fixed.",
    },
)
