"""ecs-verdict: post-deploy verification of a service on AWS ECS Fargate.

The package is pytest-free but for ``ecs_verdict.pytest_plugin``: discovery of the live tasks,
the wait for a stable deployment, evidence, diagnosis and the verdict are plain Python that
the pytest layer calls. The run's steps, in order: ``settings`` (every option, parsed once),
``preflight`` (discovery and the wait: a frozen ``Preflight``), the checks (a failed one is a
``run.CheckFailure``), ``run.conclude`` (diagnosis, verdict, actions on the service), ``reports``.
"""

__version__ = "0.1.0"
