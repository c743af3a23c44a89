"""Pool slots that outlive their run: found, freed when their holder is provably dead, never waited on silently.

A run holds a `gpu` or `sheets` pool slot (dagster.yaml: op granularity, limit 1) while `item_embeddings` or
`sheet_export` runs, and Dagster frees it when the step ends. A run killed mid-step (SIGKILL, out of memory, a
machine restarted) never frees it and stays STARTED, so every later step of that pool would wait forever; Dagster's
run monitoring cannot see a dead process under the DefaultRunLauncher and needs the daemon anyway.

The project's executor (the in-process executor with this concurrency context) therefore:
- records the process that executes the run (host, pid, and on Linux the machine id, PID namespace, boot id and the
  process's start time) in an engine event of the run, written before any step claims a slot;
- when a step's claim for a slot is refused, looks at the other runs in that pool. A run whose recorded process is
  on this machine and is gone (or its pid now belongs to another process) is dead: it is marked FAILURE, saying why,
  and its slots are freed. So are the slots of a run that is deleted, or finished without freeing them. A run that
  is alive, on another machine, or whose process was not recorded is left alone: the waiting run logs once which run
  holds the slot and the command that frees it, and gives up after NEWSLETTER_POOL_WAIT_SECONDS with that message.

`python -m newsletter_pipeline.defs.pools show` lists the holders of every pool; `... release RUN_ID` marks a run
FAILURE and frees its slots by hand (docs/instance.md, "A run that holds a pool slot").
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import dagster as dg
from dagster._core.definitions.executor_definition import IN_PROC_CONFIG, _core_in_process_executor_creation
from dagster._core.events import DagsterEvent, DagsterEventType, EngineEventData
from dagster._core.execution.api import ExecuteRunWithPlanIterable
from dagster._core.execution.context.system import PlanExecutionContext, PlanOrchestrationContext
from dagster._core.execution.context_creation_job import PlanExecutionContextManager
from dagster._core.execution.plan.execute_plan import inner_plan_execution_iterator
from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext
from dagster._core.execution.plan.plan import ExecutionPlan
from dagster._core.executor.in_process import InProcessExecutor

from newsletter_pipeline.config import load_config

WAIT_SETTING = "NEWSLETTER_POOL_WAIT_SECONDS"
PROCESS_MESSAGE = "Run process"  # the engine event that records who executes a run
RELEASE_COMMAND = "python -m newsletter_pipeline.defs.pools release"


# --- which process executes a run, and whether it still exists -------------------------------------------


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii") as file:
            return file.read().strip()
    except OSError:
        return ""


def _start_ticks(pid: int) -> str:
    """The process's start time in clock ticks since boot (Linux), "" elsewhere."""
    stat = _read(f"/proc/{pid}/stat")
    fields = stat[stat.rfind(")") + 2 :].split() if stat else []  # the command name may hold spaces and parentheses
    return fields[19] if len(fields) > 19 else ""


def _state(pid: int) -> str:
    """The process's state letter (Linux): "Z" for a zombie, "" elsewhere."""
    stat = _read(f"/proc/{pid}/stat")
    return stat[stat.rfind(")") + 2 :].split()[0] if stat else ""


@dataclass(frozen=True)
class RunProcess:
    """The process that executes a run. Its pid can be checked only from the same machine (on_this_machine): the same
    host name, machine id and PID namespace (a container of its own is another machine, even on the same host)."""

    host: str
    pid: int
    machine_id: str = ""
    pid_namespace: str = ""
    boot_id: str = ""
    start: str = ""  # clock ticks after boot; with boot_id it tells a reused pid from the original process

    @classmethod
    def current(cls) -> RunProcess:
        pid = os.getpid()
        namespace = ""
        try:
            namespace = os.readlink("/proc/self/ns/pid")
        except OSError:
            pass
        return cls(
            host=socket.gethostname(),
            pid=pid,
            machine_id=_read("/etc/machine-id") or _read("/var/lib/dbus/machine-id"),
            pid_namespace=namespace,
            boot_id=_read("/proc/sys/kernel/random/boot_id"),
            start=_start_ticks(pid),
        )

    def metadata(self) -> dict[str, str]:
        return {
            "host": self.host,
            "pid": str(self.pid),
            "machine_id": self.machine_id,
            "pid_namespace": self.pid_namespace,
            "boot_id": self.boot_id,
            "process_start": self.start,
        }

    def event_data(self) -> EngineEventData:
        """The metadata of the engine event that records this process for its run (PROCESS_MESSAGE)."""
        return EngineEventData(metadata={key: dg.MetadataValue.text(value) for key, value in self.metadata().items()})

    @classmethod
    def from_metadata(cls, metadata) -> RunProcess | None:
        values = {key: getattr(value, "value", value) for key, value in metadata.items()}
        try:
            return cls(
                host=values["host"],
                pid=int(values["pid"]),
                machine_id=values.get("machine_id", ""),
                pid_namespace=values.get("pid_namespace", ""),
                boot_id=values.get("boot_id", ""),
                start=values.get("process_start", ""),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def on_this_machine(self) -> bool:
        here = RunProcess.current()
        return (self.host, self.machine_id, self.pid_namespace) == (here.host, here.machine_id, here.pid_namespace)

    def exists(self) -> bool:
        """Whether this process still runs. Only meaningful on this machine (on_this_machine)."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # it exists, under another user
        if _state(self.pid) in ("Z", "X"):
            return False  # killed, not yet reaped by its parent
        here = RunProcess.current()
        if self.boot_id and here.boot_id and self.boot_id != here.boot_id:
            return False  # the machine has restarted since: that pid is another process
        if self.start and self.boot_id == here.boot_id and _start_ticks(self.pid) not in ("", self.start):
            return False  # the pid was reused
        return True

    def __str__(self) -> str:
        return f"pid {self.pid} on host {self.host}"


def recorded_process(instance: dg.DagsterInstance, run_id: str) -> RunProcess | None:
    """The process the run's executor recorded last (a resumed run records its new one)."""
    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.ENGINE_EVENT, ascending=False).records
    for record in records:
        entry = record.event_log_entry
        if entry.dagster_event and (entry.dagster_event.message or "").startswith(PROCESS_MESSAGE):
            found = RunProcess.from_metadata(entry.dagster_event.engine_event_data.metadata)
            if found:
                return found
    return None


# --- the runs in a pool, judged --------------------------------------------------------------------------


@dataclass(frozen=True)
class Holder:
    """A run that holds a pool slot (or waits for one), and what can be told about it."""

    run_id: str
    steps: tuple[str, ...]
    holds: bool  # a slot is claimed or assigned to it; False: it only waits in the queue
    run: dg.DagsterRun | None
    process: RunProcess | None
    verdict: str  # "dead", "finished", "deleted": its slots can go; "alive", "elsewhere", "unknown": wait
    why: str

    @property
    def freeable(self) -> bool:
        return self.verdict in ("dead", "finished", "deleted")

    def describe(self, pool: str) -> str:
        holds = "holds" if self.holds else "waits for"
        return f"run {self.run_id}, which {holds} a slot of pool {pool} for step {', '.join(self.steps)}: {self.why}"

    def how_to_free(self) -> str:
        if self.verdict == "alive":
            return (
                f"wait for it; if it hangs, end it (kill {self.process.pid} on {self.process.host}): a run on that "
                "machine then frees "
                f"its slot by itself, or `{RELEASE_COMMAND} {self.run_id}` does"
            )
        return f"if its process is gone, free its slot with `{RELEASE_COMMAND} {self.run_id}` (with this DAGSTER_HOME)"


def judge(instance: dg.DagsterInstance, run_id: str, steps: tuple[str, ...] = (), holds: bool = True) -> Holder:
    run = instance.get_run_by_id(run_id)
    if run is None:
        return Holder(run_id, steps, holds, None, None, "deleted", "the run no longer exists")
    process = recorded_process(instance, run_id)
    if process is not None and process.on_this_machine():
        if process.exists():
            return Holder(
                run_id, steps, holds, run, process, "alive", f"its process, {process}, is running ({run.status.value})"
            )
        return Holder(
            run_id,
            steps,
            holds,
            run,
            process,
            "dead" if not run.is_finished else "finished",
            f"its process, {process}, is gone (killed, out of memory, or the machine restarted)",
        )
    if run.is_finished:
        return Holder(
            run_id, steps, holds, run, process, "finished", f"the run is {run.status.value} but never freed its slot"
        )
    if process is not None:
        return Holder(
            run_id,
            steps,
            holds,
            run,
            process,
            "elsewhere",
            f"its process, {process}, is on another machine, where it cannot be checked from here ({run.status.value})",
        )
    return Holder(
        run_id,
        steps,
        holds,
        run,
        None,
        "unknown",
        "its process was not recorded (another executor or an older version), so its liveness is unknown "
        f"({run.status.value})",
    )


def pool_runs(instance: dg.DagsterInstance, pool: str, exclude: str | None = None) -> list[Holder]:
    """Every other run that holds a slot of the pool or waits for one: holders first."""
    info = instance.event_log_storage.get_concurrency_info(pool)
    steps: dict[str, list[str]] = {}
    holding: set[str] = set()
    for slot in info.claimed_slots:
        steps.setdefault(slot.run_id, []).append(slot.step_key)
        holding.add(slot.run_id)
    for pending in info.pending_steps:
        if pending.step_key not in steps.setdefault(pending.run_id, []):
            steps[pending.run_id].append(pending.step_key)
        if pending.assigned_timestamp is not None:
            holding.add(pending.run_id)
    return sorted(
        (
            judge(instance, run_id, tuple(keys), run_id in holding)
            for run_id, keys in steps.items()
            if run_id != exclude
        ),
        key=lambda holder: not holder.holds,
    )


def release(instance: dg.DagsterInstance, holder: Holder, why: str) -> None:
    """Mark the run FAILURE (unless it has finished or is gone) with the reason, and free all its pool slots."""
    if holder.run is not None:
        current = instance.get_run_by_id(holder.run_id)
        if current is not None and not current.is_finished:
            instance.report_run_failed(current, why)
    instance.event_log_storage.free_concurrency_slots_for_run(holder.run_id)


def pool_wait_seconds() -> float:
    return load_config().number(WAIT_SETTING)


# --- the executor -----------------------------------------------------------------------------------------


class PoolWaitTimeout(Exception):
    """A step waited NEWSLETTER_POOL_WAIT_SECONDS for a pool slot that a run this one cannot prove dead holds."""


class PoolGuard(InstanceConcurrencyContext):
    """Dagster's per-run concurrency context, plus: a refused claim looks at who holds the pool (module docstring)."""

    def __init__(self, job_context: PlanExecutionContext, wait_seconds: float):
        super().__init__(job_context.instance, job_context.dagster_run)
        self._log = job_context.log
        self._wait_seconds = wait_seconds
        self._blocked_since: dict[str, float] = {}
        self._announced: set[tuple[str, str, str]] = set()

    def claim(self, concurrency_key: str, step_key: str, step_priority: int = 0) -> bool:
        attempts = self._pending_claim_counts.get(step_key, 0)
        if super().claim(concurrency_key, step_key, step_priority):
            self._blocked_since.pop(step_key, None)
            return True
        if self._pending_claim_counts.get(step_key, 0) == attempts:
            return False  # backing off between two attempts: nothing new to look at
        since = self._blocked_since.setdefault(step_key, time.monotonic())
        holders = pool_runs(self._instance, concurrency_key, exclude=self._run_id)
        freed = [holder for holder in holders if holder.freeable]
        for holder in freed:
            why = (
                f"Marked FAILURE by run {self._run_id}, whose step {step_key} was waiting for a slot of pool "
                f"{concurrency_key}: "
                f"{holder.why}. Its pool slots were freed."
            )
            release(self._instance, holder, why)
            self._log.warning(
                f"Freed the pool slots of {holder.describe(concurrency_key)}"
                + (". Marked that run FAILURE." if holder.verdict == "dead" else ".")
            )
        if freed:
            self._pending_timeouts[step_key] = 0.0  # try again at once
            if super().claim(concurrency_key, step_key, step_priority):
                self._blocked_since.pop(step_key, None)
                return True
        blocking = [holder for holder in holders if not holder.freeable and holder.holds]
        for holder in blocking:
            if (step_key, holder.run_id, holder.verdict) not in self._announced:
                self._announced.add((step_key, holder.run_id, holder.verdict))
                self._log.warning(
                    f"Step {step_key} waits: {holder.describe(concurrency_key)}. To go on, {holder.how_to_free()}. "
                    f"This run gives up after {self._wait_seconds:g} s ({WAIT_SETTING})."
                )
        waited = time.monotonic() - since
        if waited > self._wait_seconds:
            if blocking:
                named = " ".join(
                    f"{holder.describe(concurrency_key)}; to go on, {holder.how_to_free()}." for holder in blocking
                )
            else:
                named = (
                    f"no other run holds one, so the pool's limit is too low: see `dagster instance concurrency get "
                    f"{concurrency_key}` and set it with `dagster instance concurrency set {concurrency_key} 1`."
                )
            raise PoolWaitTimeout(
                f"Step {step_key} gave up after waiting {waited:.0f} s ({WAIT_SETTING}={self._wait_seconds:g}) "
                f"for a slot of pool {concurrency_key}: {named} Then run it again."
            )
        return False


def _execution_iterator(
    job_context: PlanExecutionContext, execution_plan: ExecutionPlan, instance_concurrency_context=None
) -> Iterator[DagsterEvent]:
    # As dagster's inprocess_execution_iterator (1.13.27), with PoolGuard in place of InstanceConcurrencyContext.
    with PoolGuard(job_context, pool_wait_seconds()) as guard:
        yield from inner_plan_execution_iterator(job_context, execution_plan, guard)


class PoolGuardExecutor(InProcessExecutor):
    """The in-process executor (every step in the run's process, so the model loads once) with PoolGuard."""

    def execute(self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan) -> Iterator[DagsterEvent]:
        process = RunProcess.current()
        # Written before any step claims a slot: a run that later waits on this one's slot reads it from here.
        yield DagsterEvent.engine_event(plan_context, f"{PROCESS_MESSAGE}: {process}", process.event_data())
        # As InProcessExecutor.execute (1.13.27), with the iterator above.
        yield from ExecuteRunWithPlanIterable(
            execution_plan=plan_context.execution_plan,
            iterator=_execution_iterator,
            execution_context_manager=PlanExecutionContextManager(
                job=plan_context.job,
                retry_mode=plan_context.retry_mode,
                execution_plan=plan_context.execution_plan,
                run_config=plan_context.run_config,
                dagster_run=plan_context.dagster_run,
                instance=plan_context.instance,
                raise_on_error=plan_context.raise_on_error,
                output_capture=plan_context.output_capture,
                step_dependency_config=self.step_dependency_config,
            ),
        )


@dg.executor(name="in_process_pool_guard", config_schema=IN_PROC_CONFIG)
def in_process_pool_guard_executor(init_context: dg.InitExecutorContext) -> PoolGuardExecutor:
    """The in-process executor whose steps free the pool slots of dead runs and never wait on a pool silently."""
    plain = _core_in_process_executor_creation(init_context.executor_config)
    return PoolGuardExecutor(
        retries=plain.retries,
        step_dependency_config=plain.step_dependency_config,
        marker_to_close=plain.marker_to_close,
    )


# --- by hand ----------------------------------------------------------------------------------------------


def _show(instance: dg.DagsterInstance) -> int:
    pools = sorted(instance.event_log_storage.get_concurrency_keys())
    for pool in pools:
        info = instance.event_log_storage.get_concurrency_info(pool)
        holders = pool_runs(instance, pool)
        print(
            f"pool {pool}: limit {info.limit}, {len(info.claimed_slots)} claimed"
            + ("" if holders else ", no run holds or waits")
        )
        for holder in holders:
            print(f"  {holder.describe(pool)}" + (f"\n    {holder.how_to_free()}" if holder.holds else ""))
    if not pools:
        print("no pool has been used on this instance yet")
    return 0


def _release(instance: dg.DagsterInstance, run_id: str, force: bool) -> int:
    holder = judge(instance, run_id)
    if holder.verdict == "alive" and not force:
        print(
            f"run {run_id}: {holder.why}. Stop it first (kill {holder.process.pid}), or pass --force to free its "
            "slots anyway.",
            file=sys.stderr,
        )
        return 1
    release(
        instance,
        holder,
        f"Marked FAILURE by hand ({RELEASE_COMMAND} {run_id}): {holder.why}. Its pool slots were freed.",
    )
    status = instance.get_run_by_id(run_id)
    print(
        f"run {run_id}: {holder.why}; its pool slots are freed" + (f"; status {status.status.value}" if status else "")
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m newsletter_pipeline.defs.pools", description=__doc__.split("\n\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "show", help="list the runs that hold or wait for each pool's slots, and whether they are alive"
    )
    freeing = commands.add_parser("release", help="mark a run FAILURE and free its pool slots")
    freeing.add_argument("run_id")
    freeing.add_argument("--force", action="store_true", help="even when its process is seen running on this machine")
    args = parser.parse_args(argv)
    with dg.DagsterInstance.get() as instance:
        return _show(instance) if args.command == "show" else _release(instance, args.run_id, args.force)


if __name__ == "__main__":
    sys.exit(main())
