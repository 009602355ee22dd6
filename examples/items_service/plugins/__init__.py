"""The items service's smoke plugin: its suite profile, its options, its token, its contract.

Named ``plugins`` on purpose: the harness is the installed package ``ecs_verdict`` and ships
no top-level ``plugins`` (nor ``contracts``, ``smoke`` or ``stage``), so a team's own names are free.
"""
