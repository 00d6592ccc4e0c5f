"""A killed run frees its `gpu` slot: the next `kwai` run fails it and takes the slot."""
import os
import socket
import subprocess
import sys

import dagster as dg

from kwai_assets.runner import HOST_TAG, PID_TAG, fail_dead_runs

STARTED, FAILURE = dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.FAILURE


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def add(instance: dg.DagsterInstance, run_id: str, status: dg.DagsterRunStatus, pid: int | None = None) -> None:
    tags = {PID_TAG: str(pid), HOST_TAG: socket.gethostname()} if pid else {}
    instance.add_run(dg.DagsterRun(job_name="llm_profiles", run_id=run_id, status=status, tags=tags))


def claim(instance: dg.DagsterInstance, run_id: str) -> bool:
    return instance.event_log_storage.claim_concurrency_slot("gpu", run_id, "step").is_claimed


def test_a_killed_run_frees_its_gpu_slot():
    with dg.instance_for_test() as instance:
        instance.event_log_storage.set_concurrency_slots("gpu", 1)
        add(instance, "killed", STARTED, dead_pid())
        add(instance, "next", STARTED, os.getpid())
        assert claim(instance, "killed")
        assert not claim(instance, "next")                  # the dead run holds the only slot
        assert fail_dead_runs(instance) == ["killed"]
        assert instance.get_run_by_id("killed").status == FAILURE
        assert claim(instance, "next")


def test_a_run_marked_failed_by_hand_frees_its_slot_and_live_runs_keep_theirs():
    with dg.instance_for_test() as instance:
        instance.event_log_storage.set_concurrency_slots("gpu", 2)
        add(instance, "live", STARTED, os.getpid())
        add(instance, "failed", FAILURE)
        for run_id in ("a", "b"):
            add(instance, run_id, STARTED, os.getpid())
        assert claim(instance, "live") and claim(instance, "failed")
        assert fail_dead_runs(instance) == ["failed"]
        assert instance.get_run_by_id("live").status == STARTED
        assert claim(instance, "a") and not claim(instance, "b")     # one slot freed, the live run keeps its own
