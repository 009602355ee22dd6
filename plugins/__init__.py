"""Everything the harness knows about the CivicForge board service, apart from the generic ECS harness.

- ``board_api``: a logged-in smoke account talking to one task of the board API;
- ``accounts``: the owner-capable and participant smoke accounts (environment or secret);
- ``ledger``: what the suite wrote into the live board, and how it is taken back;
- ``fixtures``: the pytest layer over them (sessions, membership writes, sweeps, the
  accounts preflight), active only in runs that reach the CivicForge suite (``smoke/``).

Nothing in ``src/ecs_verdict`` imports this package; another service's suite uses the
generic part (discovery, the wait, evidence, verdict, reports) without it.
"""
