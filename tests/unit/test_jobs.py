"""The typed job input: exactly the orchestration input the webhook and the schedule tick started before it,
read back unchanged by the orchestrator, refused when malformed; and its deterministic instance IDs."""

from __future__ import annotations

import hashlib
from typing import Any, get_type_hints

import pytest
from pydantic import ValidationError

from shared_core.services.jobs import JobInput, JobPolicy, instance_id, push_job, schedule_job
from shared_core.services.messages import JobMessage

POLICY = JobPolicy(auto_approve=False, approval_ttl_hours=24, step_retries=3)
BEFORE, AFTER = "a" * 40, "b" * 40


def push() -> JobInput:
    return push_job(tenant_id="t1", repository="Octo/Models", base=BEFORE, target=AFTER, branch="main",
                    author="octocat", policy=POLICY)


def schedule(models: tuple[str, ...] = ("silver.orders",), as_of: str = "2024-01-10T06:00:00Z") -> JobInput:
    return schedule_job(tenant_id="t1", repository="Octo/Models", sha=AFTER, models=models, as_of=as_of,
                        policy=JobPolicy(auto_approve=True, approval_ttl_hours=48, step_retries=5))


def legacy_id(*parts: str) -> str:
    return f"{parts[0]}-{hashlib.sha256(chr(0).join(parts).encode()).hexdigest()[:32]}"


def test_a_push_job_is_the_orchestration_input_the_webhook_always_started() -> None:
    assert push().to_input() == {
        "kind": "push", "tenant_id": "t1", "repository": "Octo/Models", "base": BEFORE, "target": AFTER,
        "branch": "main", "author": "octocat", "auto_approve": False, "approval_ttl_hours": 24, "step_retries": 3,
    }
    numbered = push().model_copy(update={"sequence": 3})  # the push's number on its branch, set by start_job
    assert numbered.to_input() == {**push().to_input(), "sequence": 3}
    assert numbered.instance_id == legacy_id("push", "octo/models", "main", BEFORE, AFTER, "3")


def test_a_schedule_job_is_the_orchestration_input_the_tick_always_started() -> None:
    job = schedule(("silver.orders", "gold.daily"))
    assert job.to_input() == {
        "kind": "schedule", "tenant_id": "t1", "repository": "Octo/Models", "base": AFTER, "target": AFTER,
        "models": ["silver.orders", "gold.daily"], "as_of": "2024-01-10T06:00:00Z", "author": "schedule",
        "auto_approve": True, "approval_ttl_hours": 48, "step_retries": 5,
    }
    assert job.instance_id == legacy_id("schedule", "octo/models", AFTER, "2024-01-10T06:00:00Z", "silver.orders",
                                        "gold.daily")


def test_instance_ids_name_the_work_and_nothing_else() -> None:
    assert schedule().instance_id == schedule().instance_id
    assert schedule(as_of="2024-01-11T06:00:00Z").instance_id != schedule().instance_id
    assert schedule(("gold.daily",)).instance_id != schedule().instance_id
    assert push().instance_id.startswith("push-") and len(push().instance_id) == 37
    again = [push().model_copy(update={"sequence": n}).instance_id for n in (1, 1, 2, 3)]
    assert again[0] == again[1] and len(set(again)) == 3  # the same commits pushed again: another instance
    other_branch = push().model_copy(update={"sequence": 1, "branch": "release"}).instance_id
    assert other_branch not in again  # the same commits pushed to two branches: two pushes
    assert instance_id("push", "o/r", BEFORE, AFTER) != instance_id("schedule", "o/r", BEFORE, AFTER)


@pytest.mark.parametrize("job", [push(), schedule()], ids=["push", "schedule"])
def test_the_orchestrator_reads_back_the_same_job(job: JobInput) -> None:
    again = JobInput.model_validate(job.to_input())
    assert again == job and again.to_input() == job.to_input() and again.instance_id == job.instance_id


@pytest.mark.parametrize("job", [push(), schedule()], ids=["push", "schedule"])
def test_the_typed_message_is_the_models_json(job: JobInput) -> None:
    # `to_input` writes the fields out (so that its type is `JobMessage`): it must stay pydantic's own JSON
    assert job.to_input() == job.model_dump(mode="json", exclude_none=True)
    assert set(get_type_hints(JobMessage)) == set(JobInput.model_fields)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"kind": "tag"}, "kind"),
        ({"approval_ttl_hours": "a day"}, "approval_ttl_hours"),
        ({"instance_id": "push-" + "0" * 32}, "instance_id"),  # unknown keys are refused, not ignored
        ({"tenant_id": None}, "tenant_id"),
    ],
)
def test_malformed_inputs_are_refused_naming_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        JobInput.model_validate({**push().to_input(), **change})
    assert [error["loc"][0] for error in caught.value.errors()] == [field]


def test_a_job_input_cannot_be_changed() -> None:
    job = push()
    with pytest.raises(ValidationError):
        job.target = BEFORE
    assert job.target == AFTER
