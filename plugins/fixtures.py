"""Logged-in smoke accounts, serialised membership writes, and the clean-up that always runs.

Fixtures (all ``smoke_*``):

- ``smoke_login``: the owner's and participant's sessions on this test's task
  (one login per account per task per process; tokens registered as secrets first).
- ``smoke_owner`` / ``smoke_participant``: :class:`BoardApi` for each account on the task;
  ``smoke_participants``: the whole participant pool (runs that overlap each join their own).
- ``smoke_anonymous``: the same routes without credentials.
- ``smoke_ledger``: the run's :class:`Ledger` (``.smoke/ledger.jsonl``, shared by workers).
- ``smoke_memberships``: holds the inter-process write lock for the whole test and records
  every join and removal; at teardown it removes what the test added, pass or fail.

The suite's own option (``--board-id``) and profile (``pytest_smoke_suite``: its name, metrics
namespace and causes, from ``plugins.causes``) are given to the harness here.

Hooks: the controller sweeps leftover smoke memberships before the tests and at the
very end (also after Ctrl-C); SIGTERM is turned into KeyboardInterrupt in smoke runs so
it gets the same clean-up. ``--read-only`` runs write nothing, sweeps included.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Generator, Iterator, Mapping
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import pytest

from contracts import check_auth
from contracts.errors import describe_status
from plugins.causes import CIVICFORGE_PROFILE, DEFAULT_BOARD_ID
from plugins.accounts import ENV_NAMES, ROLES, Account, SmokeAccounts, half_given_account, load_accounts
from plugins.board_api import Anonymous, BoardApi, Session, check_logins, guard_secrets, login, register
from plugins.ledger import DEFAULT_LEDGER_PATH, Ledger, MembershipWrites, SweepResult, sweep_memberships
from ecs_verdict.aws import make_clients
from ecs_verdict.errors import CouldNotVerify, HarnessOutcome
from ecs_verdict.http import DEFAULT_TIMEOUT, ExchangeLog, keepalive_limits, shared_ssl_context
from ecs_verdict.kinds import Kind
from ecs_verdict.redact import SecretRegistry
from ecs_verdict.settings import OptionSpec, parse_name
from ecs_verdict.suite import SuiteProfile
from ecs_verdict.targets import Target
from ecs_verdict.pytest_plugin.fixtures import registry_of
from ecs_verdict.pytest_plugin.harness_errors import harness_hook
from ecs_verdict.pytest_plugin.reporting import NOTE_PROPERTY
from ecs_verdict.pytest_plugin.options import SmokeConfig, add_suite_option, resolve_suite_option
from ecs_verdict.pytest_plugin.smoke_plugin import reaches
from ecs_verdict.pytest_plugin.stash import config_key, smoke_run_key, state_key

LEDGER_ENV = "SMOKE_LEDGER"
RUN_ID_KEY = "smoke_run_id"
END_SWEEP_LOCK_TIMEOUT_S = 30.0  # at the end no worker writes any more; do not hang a cancelled job
ledger_key = pytest.StashKey[Ledger]()
sweeps_key = pytest.StashKey[list[str]]()
end_swept_key = pytest.StashKey[bool]()
previous_sigterm_key = pytest.StashKey[Any]()
accounts_key = pytest.StashKey[SmokeAccounts]()
board_id_key = pytest.StashKey[tuple[str, str]]()  # (board id, where it came from), resolved once per process
BOARD_ID = OptionSpec("board_id", "--board-id", "SMOKE_BOARD_ID", "board the invite and permission checks use",
                      DEFAULT_BOARD_ID, parse_name)


def configured_accounts(resolved: SmokeConfig, secrets: SecretRegistry, config: pytest.Config | None = None
                        ) -> SmokeAccounts:
    """The smoke accounts from SMOKE_OWNER_*/SMOKE_PARTICIPANT_* or ``--smoke-secret`` (passwords registered).

    Read once per process: with ``config`` the accounts are kept in its stash, and the
    preflight's AWS clients are reused for the secret.
    """
    if config is not None and accounts_key in config.stash:
        return config.stash[accounts_key]
    secretsmanager = None
    if resolved.smoke_secret:
        state = config.stash.get(state_key, None) if config is not None else None
        clients = state.clients if state is not None and state.clients is not None else make_clients(
            resolved.aws_region)
        secretsmanager = clients.secretsmanager
    accounts = load_accounts(os.environ, secret_name=resolved.smoke_secret, secretsmanager=secretsmanager,
                             secrets=secrets)
    if config is not None:
        config.stash[accounts_key] = accounts
    return accounts


@pytest.fixture(scope="session")
def smoke_accounts(pytestconfig: pytest.Config, smoke_config: SmokeConfig, smoke_secrets: SecretRegistry
                   ) -> SmokeAccounts:
    """The owner-capable and the participant smoke accounts (reused across runs, never created per run)."""
    try:
        return configured_accounts(smoke_config, smoke_secrets, pytestconfig)
    except HarnessOutcome as outcome:
        pytest.fail(f"could not verify: {outcome}", pytrace=False)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_suite_option(parser, BOARD_ID)
    parser.getgroup("smoke").addoption(
        "--ledger", dest="smoke_ledger", default=None, metavar="PATH",
        help=f"JSON-lines ledger of smoke memberships [env {LEDGER_ENV}] (default {DEFAULT_LEDGER_PATH})")


CIVICFORGE_SUITE = Path(__file__).resolve().parents[1] / "smoke"


def pytest_smoke_suite_folders(config: pytest.Config) -> list[Path]:
    """The CivicForge suite's folder is a smoke suite wherever this plugin is loaded."""
    return [CIVICFORGE_SUITE]


def pytest_smoke_suite(config: pytest.Config) -> SuiteProfile | None:
    """CivicForge's name, metrics namespace and causes, for a run that reaches its suite (another suite answers else)."""
    return CIVICFORGE_PROFILE if reaches(config, CIVICFORGE_SUITE) else None


def board_id_of(config: pytest.Config) -> str:
    """The board the checks use (``--board-id``), resolved in ``pytest_configure``."""
    return config.stash.get(board_id_key, (DEFAULT_BOARD_ID, "default"))[0]


@harness_hook
def pytest_report_header(config: pytest.Config) -> list[str]:
    if board_id_key not in config.stash:
        return []
    board_id, source = config.stash[board_id_key]
    return ["CivicForge suite options:", f"  board-id: {board_id} (from {source})"]


def _is_smoke_run(config: pytest.Config) -> bool:
    """A smoke run of the CivicForge suite: another service's suite gets none of its accounts or sweeps."""
    return config.stash.get(smoke_run_key, False) and reaches(config, CIVICFORGE_SUITE)


def _is_controller(config: pytest.Config) -> bool:
    return not hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    if not _is_smoke_run(config):
        return
    config.stash[board_id_key] = resolve_suite_option(config, BOARD_ID)  # a bad value: one line, exit 4
    workerinput = getattr(config, "workerinput", {})
    run_id = workerinput.get(RUN_ID_KEY) or uuid.uuid4().hex[:12]
    chosen = config.getoption("smoke_ledger") or os.environ.get(LEDGER_ENV, "").strip() or DEFAULT_LEDGER_PATH
    path = Path(chosen)
    path = path if path.is_absolute() else Path(config.invocation_params.dir) / path
    if _is_controller(config):  # bad input: one line before any network, exit 4
        half = half_given_account(os.environ)
        if half is not None:
            raise pytest.UsageError(half)
        resolved: SmokeConfig | None = config.stash.get(config_key, None)
        if resolved is None or not resolved.read_only:  # a read-only run writes no ledger
            check_ledger_writable(path)
    config.stash[ledger_key] = Ledger(path, run_id)
    config.stash[sweeps_key] = []
    try:
        config.stash[previous_sigterm_key] = signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    except ValueError:  # not the main thread (an embedding runner): leave SIGTERM alone
        pass


def check_ledger_writable(path: Path) -> None:
    """``pytest.UsageError`` unless the ledger and its lock files can be written beside it.

    Probed with a file of its own, so a run that writes no membership leaves no ledger behind.
    """
    if path.is_dir():
        raise pytest.UsageError(f"--ledger {str(path)!r} is a folder; give a file path, e.g. {DEFAULT_LEDGER_PATH}")
    probe = path.with_name(f".{path.name}.write-probe")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            with open(path, "a", encoding="utf-8"):
                pass
        probe.write_text("", encoding="utf-8")
        probe.unlink()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise pytest.UsageError(f"--ledger {str(path)!r} cannot be written ({reason}); give a file path you can "
                                f"write to (or {LEDGER_ENV})") from None


def pytest_unconfigure(config: pytest.Config) -> None:
    previous = config.stash.get(previous_sigterm_key, None)
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


def _interrupt_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # CI cancels a job with SIGTERM: unwind exactly like Ctrl-C, so teardowns and the sweep run.
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist: every worker writes under the controller's run id."""
    ledger = node.config.stash.get(ledger_key, None)
    if ledger is not None:
        node.workerinput[RUN_ID_KEY] = ledger.run_id


# -- the sweeps (controller) -------------------------------------------------------------------


@pytest.hookimpl(trylast=True)  # after the preflight found the targets
def pytest_sessionstart(session: pytest.Session) -> None:
    config = session.config
    if _is_smoke_run(config) and _is_controller(config):
        harness_hook(check_accounts_log_in)(config)
        _sweep(config, "before the tests")


def accounts_configured(resolved: SmokeConfig, environ: Mapping[str, str]) -> bool:
    """Whether the job names smoke accounts at all (a secret, or both accounts in the environment)."""
    return bool(resolved.smoke_secret) or all(
        environ.get(ENV_NAMES[(role, field)]) for role in ROLES for field in ("username", "password"))


def _selection_narrowed(config: pytest.Config) -> bool:
    """``-k``/``-m`` or single test files: the person chose checks that may need no account."""
    narrowed_args = any(Path(arg.split("::", 1)[0]).name not in ("smoke", "") for arg in config.args)
    return bool(config.option.keyword or config.option.markexpr or narrowed_args)


def check_accounts_log_in(config: pytest.Config) -> None:
    """Before any test: every smoke account can be read and logs in, or one could-not-verify line.

    A secret that cannot be read or is malformed, an account the service refuses (401),
    or a missing participant ``--bootstrap-accounts`` would have to register on production
    would make every test error the same way; the run says it once instead (exit 6,
    category ``smoke_accounts``). Other answers are the service's and left
    to the tests.
    """
    state = config.stash.get(state_key, None)
    resolved: SmokeConfig | None = config.stash.get(config_key, None)
    if state is None or resolved is None or state.outcome is not None or not state.targets:
        return
    if not accounts_configured(resolved, os.environ) and _selection_narrowed(config):
        return  # e.g. `-k health`: the checks that need an account report it themselves
    secrets = registry_of(config)
    try:
        accounts = configured_accounts(resolved, secrets, config)
    except HarnessOutcome as outcome:
        state.outcome = outcome
        return
    target = state.targets[0]
    # A participant --bootstrap-accounts may register is not checked, except on production, where it may not.
    may_register = resolved.bootstrap_accounts and resolved.environment != "production"
    checked = [accounts.owner, *(() if may_register else accounts.participants)]
    result = check_logins([t.base_url for t in state.targets], checked, secrets)
    state.notes.extend(note for note in result.notes if note not in state.notes)
    for account, answer in result.answers:
        if answer is None:
            return  # the tests report a task that stops answering
        if answer.status_code == 401 and resolved.bootstrap_accounts and account.role == "participant":
            state.outcome = CouldNotVerify(
                f"--bootstrap-accounts would register {account.username!r} on production: create the "
                "participant account by hand, or pass --environment NAME for a test stage",
                kind=Kind.ACCOUNTS, details={"account": account.username})
            return
        if answer.status_code == 401:
            state.outcome = CouldNotVerify(
                f"the {account.role} smoke account {account.username!r} was refused at login "
                f"({describe_status(answer)}) on {target.describe()}: fix its password in {accounts.source}",
                kind=Kind.ACCOUNTS, details={"account": account.username})
            return


@pytest.hookimpl(wrapper=True)
def pytest_sessionfinish(session: pytest.Session) -> Generator[None, None, None]:
    # After everything else (xdist has stopped its workers; the reports are written), also after Ctrl-C.
    try:
        return (yield)
    finally:
        config = session.config
        if _is_smoke_run(config) and _is_controller(config) and not config.stash.get(end_swept_key, False):
            _sweep(config, "after the tests", lock_timeout_s=END_SWEEP_LOCK_TIMEOUT_S)


@pytest.hookimpl(optionalhook=True)
@harness_hook
def pytest_smoke_before_service_action(config: pytest.Config) -> None:
    # The gate is about to continue or roll back the deployment, which may stop the tasks under test:
    # sweep through them now rather than after, when they no longer answer.
    if _is_smoke_run(config) and _is_controller(config):
        _sweep(config, "after the tests, before the gate acted", lock_timeout_s=END_SWEEP_LOCK_TIMEOUT_S)
        config.stash[end_swept_key] = True


@harness_hook
def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    for line in config.stash.get(sweeps_key, []):
        terminalreporter.write_line(line)


@harness_hook
def _sweep(config: pytest.Config, when: str, *, lock_timeout_s: float | None = None) -> None:
    result = sweep_deployment(config, lock_timeout_s=lock_timeout_s)
    if result is None:
        return
    # pytest prints the terminal summary after this (also after Ctrl-C), end sweep included.
    config.stash.setdefault(sweeps_key, []).append(f"{result.describe()} ({when})")


def sweep_deployment(config: pytest.Config, *, lock_timeout_s: float | None = None) -> SweepResult | None:
    """Remove leftover smoke memberships through the first task that lets the owner do it.

    None when there is nothing to sweep with (no targets, no accounts, a read-only run).
    """
    resolved: SmokeConfig | None = config.stash.get(config_key, None)
    state = config.stash.get(state_key, None)
    ledger = config.stash.get(ledger_key, None)
    if resolved is None or state is None or ledger is None or resolved.read_only or state.blocks_tests:
        return None  # a read-only run writes nothing; a failed deploy is not touched
    targets = state.targets
    if not targets:
        return None
    secrets = registry_of(config)
    try:
        accounts = configured_accounts(resolved, secrets, config)
    except HarnessOutcome:
        return None  # the tests report the missing accounts
    problems = []
    kwargs = {} if lock_timeout_s is None else {"timeout_s": lock_timeout_s}
    try:
        with ledger.write_lock(**kwargs):
            for target in targets:
                result = _sweep_through(target, accounts, board_id_of(config), ledger, secrets)
                if result.problem is None:
                    return result
                problems.append(result.problem)
    except (TimeoutError, OSError) as error:
        return SweepResult(problem=str(error))
    return SweepResult(problem="; ".join(problems))


def _sweep_through(target: Target, accounts: SmokeAccounts, board_id: str, ledger: Ledger,
                   secrets: SecretRegistry) -> SweepResult:
    with httpx.Client(base_url=target.base_url, timeout=DEFAULT_TIMEOUT, verify=shared_ssl_context(),
                      limits=keepalive_limits()) as client:
        guard_secrets(client, secrets)
        try:
            answer = login(client, accounts.owner.username, accounts.owner.password)
            if answer.status_code != 200:
                return SweepResult(problem=f"the owner's login answered {answer.status_code} on task {target.short_id}")
            body = answer.json()
            owner = BoardApi(client, Session(accounts.owner.username, body["user_id"], body["token"]), board_id)
            usernames = [account.username for account in accounts.participants]
            return sweep_memberships(ledger, owner, usernames, task=target.short_id)
        except (httpx.HTTPError, ValueError, KeyError) as error:
            return SweepResult(problem=f"task {target.short_id}: {type(error).__name__}")


# -- fixtures ------------------------------------------------------------------------------------


class SmokeLogins:
    """Both smoke accounts on one task, each logged in on first use and then cached.

    Lazy on purpose: a login the task refuses (a 500 when migrations never ran)
    fails the test that needed it, a proven breakage, instead of erroring its
    set-up, which would read as "could not verify".
    """

    def __init__(self, client: httpx.Client, accounts: SmokeAccounts, config: SmokeConfig, target: Target,
                 cache: dict[tuple[str, str], Session]) -> None:
        self._client = client
        self._accounts = accounts
        self._config = config
        self._target = target
        self._cache = cache

    @property
    def owner(self) -> Session:
        return self._session(self._accounts.owner)

    @property
    def participant(self) -> Session:
        return self._session(self._accounts.participant)

    def session_of(self, account: Account) -> Session:
        """Any account of the pool, logged in on first use."""
        return self._session(account)

    def _session(self, account: Account) -> Session:
        __tracebackhide__ = True
        key = (self._target.base_url, account.username)
        if key not in self._cache:
            self._cache[key] = _log_in(self._client, account, self._config, self._target)
        return self._cache[key]


@pytest.fixture(scope="session")
def smoke_ledger(pytestconfig: pytest.Config, smoke_config: SmokeConfig) -> Ledger:
    """The run's ledger of smoke memberships (shared by every xdist worker)."""
    return pytestconfig.stash[ledger_key]


@pytest.fixture(scope="session")
def smoke_session_cache() -> dict[tuple[str, str], Session]:
    """Sessions by (task base URL, username): one login per account per task per process."""
    return {}


@pytest.fixture
def smoke_login(smoke_target: Target, smoke_http: httpx.Client, smoke_accounts: SmokeAccounts,
                smoke_config: SmokeConfig, smoke_secrets: SecretRegistry,
                smoke_session_cache: dict[tuple[str, str], Session]) -> SmokeLogins:
    """The owner and the participant on this task (``check_auth`` on each login, done on first use)."""
    guard_secrets(smoke_http, smoke_secrets)  # the token is a secret before anything can print it
    return SmokeLogins(smoke_http, smoke_accounts, smoke_config, smoke_target, smoke_session_cache)


def _log_in(client: httpx.Client, account: Account, config: SmokeConfig, target: Target) -> Session:
    __tracebackhide__ = True
    response = login(client, account.username, account.password)
    if response.status_code == 401 and account.role == "participant" and config.bootstrap_accounts:
        if config.environment == "production":
            pytest.fail(f"--bootstrap-accounts would register {account.username!r} on production: "
                        "create the participant account by hand, or pass --environment NAME for a test stage",
                        pytrace=False)
        response = register(client, account.username, account.password, real_name="Smoke Participant")
    body = check_auth(response, username=account.username, task=target.short_id)
    return Session(account.username, body.user_id, body.token)


@pytest.fixture(scope="session")
def smoke_board_id(pytestconfig: pytest.Config) -> str:
    """The board the checks use (``--board-id``, ``SMOKE_BOARD_ID``, ini ``smoke_board_id``; default board_001)."""
    return board_id_of(pytestconfig)


@pytest.fixture
def smoke_owner(smoke_login: SmokeLogins, smoke_http: httpx.Client, smoke_board_id: str) -> BoardApi:
    """The owner smoke account on this task, for ``--board-id``."""
    return BoardApi(smoke_http, lambda: smoke_login.owner, smoke_board_id)


@pytest.fixture
def smoke_participant(smoke_login: SmokeLogins, smoke_http: httpx.Client, smoke_board_id: str) -> BoardApi:
    """The participant smoke account (no membership at rest) on this task."""
    return BoardApi(smoke_http, lambda: smoke_login.participant, smoke_board_id)


@pytest.fixture
def smoke_participants(smoke_login: SmokeLogins, smoke_http: httpx.Client, smoke_board_id: str,
                       smoke_accounts: SmokeAccounts) -> list[BoardApi]:
    """Every participant account of the pool on this task (each logs in on first use)."""
    return [BoardApi(smoke_http, lambda account=account: smoke_login.session_of(account), smoke_board_id,
                     username=account.username)
            for account in smoke_accounts.participants]


@pytest.fixture
def smoke_anonymous(smoke_http: httpx.Client, smoke_board_id: str) -> Anonymous:
    """The board routes without any credentials."""
    return Anonymous(smoke_http, smoke_board_id)


@pytest.fixture
def smoke_memberships(request: pytest.FixtureRequest, smoke_ledger: Ledger, smoke_owner: BoardApi,
                      smoke_target: Target, smoke_exchanges: ExchangeLog, smoke_accounts: SmokeAccounts
                      ) -> Iterator[MembershipWrites]:
    """Membership writes for this test: under the inter-process lock, recorded, undone at teardown.

    The lock is shared among tests, each holding its own participant of the pool (the tasks share
    one database: one participant joins one task at a time), so every task's writes can overlap;
    the sweeps take it exclusively. Collisions with runs on other machines become notes in the
    report (``smoke_exchanges.notes``).
    """
    usernames = [account.username for account in smoke_accounts.participants]
    with smoke_ledger.write_lock(shared=True), smoke_ledger.account_lock(usernames) as reserved:
        writes = MembershipWrites(smoke_ledger, smoke_owner, task=smoke_target.short_id,
                                  notes=smoke_exchanges.notes, reserved=reserved)
        try:
            yield writes
        finally:
            problems = writes.undo()
    if writes.unanswered:
        # The task stopped answering (ECS may have stopped it): not the service's finding. The end-of-run
        # sweep removes what is left through a task that answers; the report says so.
        request.node.user_properties.append((NOTE_PROPERTY, (
            f"clean-up on task {smoke_target.short_id}: " + "; ".join(writes.unanswered)
            + "; left to the end-of-run sweep, which goes through a live task")))
    if problems:
        pytest.fail("clean-up left a smoke membership behind (the next run's sweep retries): "
                    + "; ".join(problems), pytrace=False)
