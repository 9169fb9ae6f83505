"""The job resource: apply, create, read, list, delete, stop/resume/rerun, events, progress, result."""

from __future__ import annotations

import json
import time

import pytest
import yaml

from controller.spec import load_spec_file
from controller.status import Event, utcnow
from controller.store import DataStore

SPEC_YAML = """# a comment the API must keep
apiVersion: opeva/v1
kind: Job
metadata:
  name: ppo-seed-42   # the job id
  labels: {experiment: citylearn}
spec:
  image: calof/opeva_simulator:latest
  args:
    - --config
    - /data/configs/ppo.yaml
  env:
    SEED: "42"
"""


def yaml_spec(name: str, image: str = "busybox", **spec) -> str:
    return yaml.safe_dump(
        {"apiVersion": "opeva/v1", "kind": "Job", "metadata": {"name": name}, "spec": {"image": image, **spec}},
        sort_keys=False,
    )


# ---- apply / create ----------------------------------------------------------------------------------------------
def test_put_creates_a_spec_file_verbatim(api):
    r = api.client.put("/jobs/ppo-seed-42", content=SPEC_YAML, headers={"Content-Type": "application/yaml"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["action"] == "created" and body["specFile"] == "ppo-seed-42.yaml" and body["generation"]
    assert (api.folder.specs / "ppo-seed-42.yaml").read_text() == SPEC_YAML


def test_put_same_spec_again_changes_nothing(api):
    api.client.put("/jobs/ppo-seed-42", content=SPEC_YAML, headers={"Content-Type": "application/yaml"})
    path = api.folder.specs / "ppo-seed-42.yaml"
    before = path.stat().st_mtime_ns
    r = api.client.put("/jobs/ppo-seed-42", content=SPEC_YAML, headers={"Content-Type": "application/yaml"})
    assert r.status_code == 200 and r.json()["action"] == "unchanged"
    assert path.stat().st_mtime_ns == before


def test_put_json_body_creates_a_yaml_file(api):
    doc = {"apiVersion": "opeva/v1", "kind": "Job", "metadata": {"name": "j1"}, "spec": {"image": "busybox"}}
    r = api.client.put("/jobs/j1", json=doc)
    assert r.status_code == 201
    assert yaml.safe_load((api.folder.specs / "j1.yaml").read_text()) == doc


def test_put_updates_the_file_the_controller_recorded(api):
    api.folder.spec("j1", file="team/a/job-one.json")
    api.folder.status("j1", specFile="team/a/job-one.json")
    r = api.client.put("/jobs/j1", content=yaml_spec("j1", image="alpine"), headers={"Content-Type": "text/yaml"})
    assert r.status_code == 200 and r.json() == {**r.json(), "action": "updated", "specFile": "team/a/job-one.json"}
    doc = json.loads((api.folder.specs / "team/a/job-one.json").read_text())  # JSON stays JSON
    assert doc["spec"]["image"] == "alpine"
    assert not (api.folder.specs / "j1.yaml").exists()


def test_put_finds_a_file_by_scanning_when_there_is_no_record(api):
    api.folder.spec("j2", file="nested/other-name.yaml")
    r = api.client.put("/jobs/j2", content=yaml_spec("j2", image="alpine"))
    assert r.status_code == 200 and r.json()["specFile"] == "nested/other-name.yaml"


def test_put_replaces_an_invalid_spec_file(api):
    api.folder.spec("j3", text="apiVersion: opeva/v1\nkind: Job\nmetadata: {name: j3}\nspec: {imag: typo}\n")
    r = api.client.put("/jobs/j3", content=yaml_spec("j3"))
    assert r.status_code == 200 and r.json()["action"] == "updated"


def test_put_name_must_match_url(api):
    r = api.client.put("/jobs/other", content=yaml_spec("j1"))
    assert r.status_code == 422 and "does not match" in r.json()["detail"]


def test_put_rejects_an_invalid_spec_with_the_same_message_as_a_dropped_file(api, folder, tmp_path):
    text = yaml_spec("j1", imagePolicy="Always")
    r = api.client.put("/jobs/j1", content=text)
    assert r.status_code == 422
    dropped = tmp_path / "drop"
    dropped.mkdir()
    (dropped / "j1.yaml").write_text(text)
    file_error = load_spec_file(dropped / "j1.yaml", dropped).error
    assert r.json()["detail"].replace("request body", "j1.yaml") == file_error
    assert "spec.imagePolicy: unknown field" in r.json()["detail"]
    assert not (folder.specs / "j1.yaml").exists()


def test_post_creates_and_refuses_an_existing_name(api):
    r = api.client.post("/jobs", content=yaml_spec("j1"))
    assert r.status_code == 201 and r.json()["action"] == "created"
    r = api.client.post("/jobs", content=yaml_spec("j1", image="alpine"))
    assert r.status_code == 409 and "already exists" in r.json()["detail"]


def test_post_refuses_to_overwrite_a_file_that_defines_another_job(api):
    api.folder.spec("other", file="j1.yaml")
    r = api.client.post("/jobs", content=yaml_spec("j1"))
    assert r.status_code == 409 and "defines job 'other'" in r.json()["detail"]
    assert "name: other" in (api.folder.specs / "j1.yaml").read_text()


def test_api_writes_leave_no_temp_files(api):
    api.client.put("/jobs/j1", content=yaml_spec("j1"))
    api.client.post("/jobs/j1/stop")
    assert sorted(p.name for p in api.folder.specs.iterdir()) == ["j1.yaml"]


# ---- read --------------------------------------------------------------------------------------------------------
def test_get_job_returns_spec_and_status(api):
    api.folder.spec("j1", file="x/j1.yaml", env={"A": "1"})
    api.folder.status("j1", phase="Running", specFile="x/j1.yaml", attempts=1)
    body = api.client.get("/jobs/j1").json()
    assert body["metadata"]["name"] == "j1" and body["specFile"] == "x/j1.yaml"
    assert body["spec"] == {"image": "busybox", "env": {"A": "1"}}
    assert body["status"]["phase"] == "Running" and body["status"]["attempts"] == 1
    assert body["specError"] is None


def test_get_job_with_a_spec_but_no_status_yet(api):
    api.folder.spec("j1")
    body = api.client.get("/jobs/j1").json()
    assert body["status"] is None and body["spec"]["image"] == "busybox"


def test_get_job_with_an_invalid_spec_says_why(api):
    api.folder.spec("j1", text="apiVersion: opeva/v1\nkind: Job\nmetadata: {name: j1}\nspec: {imag: x}\n")
    body = api.client.get("/jobs/j1").json()
    assert body["spec"] is None and "spec.imag: unknown field" in body["specError"]


def test_get_job_after_spec_deleted_shows_the_record(api):
    api.folder.status("j1", phase="Stopped", reason="SpecDeleted", specFile="j1.yaml")
    body = api.client.get("/jobs/j1").json()
    assert body["spec"] is None and body["status"]["reason"] == "SpecDeleted"


def test_get_unknown_job_is_404(api):
    r = api.client.get("/jobs/nope")
    assert r.status_code == 404 and "'nope' not found" in r.json()["detail"]


# ---- list --------------------------------------------------------------------------------------------------------
@pytest.fixture
def listed(api):
    statuses = []
    for i in range(25):
        phase = ["Pending", "Running", "Succeeded", "Failed", "Stopped"][i % 5]
        labels = {"team": "a" if i % 2 else "b", "idx": str(i)}
        statuses.append(api.folder.status(f"job-{i:02d}", phase=phase, labels=labels, attempts=1))
    api.folder.track(statuses)
    api.folder.job_file("job-03", "job_info.json", json.dumps({"image": "busybox"}))
    return api


def test_list_has_the_seed_shape(listed):
    r = listed.client.get("/jobs")
    items = r.json()
    assert isinstance(items, list) and len(items) == 25 and r.headers["X-Total-Count"] == "25"
    item = items[3]
    assert item["job_id"] == "job-03" and item["status"] == "failed" and item["phase"] == "Failed"
    assert item["job_info"]["image"] == "busybox" and item["job_info"]["job_id"] == "job-03"
    assert item["job_info"]["status"] == "failed" and item["job_info"]["resolved_config_available"] is False


def test_list_filters_by_phase_and_label(listed):
    items = listed.client.get("/jobs", params=[("phase", "Running"), ("label", "team=a")]).json()
    assert [i["name"] for i in items] == ["job-01", "job-11", "job-21"]
    items = listed.client.get("/jobs", params={"phase": "failed,stopped"}).json()  # seed words, comma list
    assert {i["phase"] for i in items} == {"Failed", "Stopped"}
    items = listed.client.get("/jobs", params=[("label", "team=b"), ("label", "idx=4")]).json()
    assert [i["name"] for i in items] == ["job-04"]
    assert listed.client.get("/jobs", params={"label": "nokey"}).json() == []


def test_list_paginates_with_continue(listed):
    seen, token, pages = [], None, 0
    while True:
        params = {"limit": 10, "phase": "Running,Pending"}
        if token:
            params["continue"] = token
        r = listed.client.get("/jobs", params=params)
        assert r.headers["X-Total-Count"] == "10"
        seen += [i["name"] for i in r.json()]
        pages += 1
        token = r.headers.get("X-Continue")
        if not token:
            break
    assert pages == 1 and len(seen) == 10
    r = listed.client.get("/jobs", params={"limit": 7})
    assert [i["name"] for i in r.json()][-1] == "job-06" and r.headers["X-Continue"] == "job-06"
    assert 'rel="next"' in r.headers["Link"]
    r = listed.client.get("/jobs", params={"limit": 7, "continue": "job-20"})
    assert [i["name"] for i in r.json()] == ["job-21", "job-22", "job-23", "job-24"]
    assert "X-Continue" not in r.headers


def test_list_sees_a_new_index_file(listed):
    assert len(listed.client.get("/jobs").json()) == 25
    listed.folder.track([listed.folder.status("only-one")])
    assert [i["name"] for i in listed.client.get("/jobs").json()] == ["only-one"]


def test_a_slow_index_is_parsed_again_in_the_background(listed):
    from api.index import JobIndex

    index = JobIndex(listed.folder.store)
    assert len(index.snapshot().names) == 25
    index._parse_seconds = 10.0  # as if the last parse had taken long (a folder of 100,000 jobs)
    listed.folder.track([listed.folder.status("only-one")])
    assert len(index.snapshot().names) in (1, 25)  # the previous version while the new one is parsed
    deadline = time.monotonic() + 10
    while index.snapshot().names != ["only-one"]:
        assert time.monotonic() < deadline, "the new index was never parsed"
        time.sleep(0.05)


def test_index_query_matches_a_plain_filter(listed):
    from itertools import product

    from api.index import JobIndex
    from controller.selectors import labels_match

    index = JobIndex(listed.folder.store)
    rows = index.snapshot().entries
    phase_sets = [None, {"Running"}, {"Failed", "Stopped"}, {"Pending", "Succeeded", "Running"}]
    selectors = [None, [("team", "a")], [("team", "b"), ("idx", None)], [("idx", "4")], [("nokey", None)]]
    for phases, selector, limit, after in product(phase_sets, selectors, [None, 1, 3], [None, "job-04", "job-13"]):
        want = [r for r in rows if (not phases or r["phase"] in phases) and labels_match(r["labels"], selector or [])]
        page = index.query(phases, selector, limit, after)
        shown = [r for r in want if after is None or r["name"] > after]
        assert page.total == len(want) and page.items == shown[:limit], (phases, selector, limit, after)
        assert page.next_after == (shown[limit - 1]["name"] if limit and len(shown) > limit else None)


def test_list_without_an_index_reads_status_files(api):
    api.folder.status("a1", phase="Succeeded")
    items = api.client.get("/jobs").json()
    assert [(i["name"], i["status"]) for i in items] == [("a1", "finished")]


def test_list_answers_304_until_something_it_shows_changes(listed):
    client, folder = listed.client, listed.folder
    first = client.get("/jobs")
    etag = first.headers["ETag"]
    again = client.get("/jobs", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["ETag"] == etag
    assert client.get("/jobs", headers={"If-None-Match": f'W/"x", {etag}'}).status_code == 304
    assert client.get("/jobs", params={"limit": 5}, headers={"If-None-Match": etag}).status_code == 200  # other query

    def changed(step) -> dict[str, dict]:
        nonlocal etag
        step()
        r = client.get("/jobs", headers={"If-None-Match": etag})
        assert r.status_code == 200 and r.headers["ETag"] != etag, step
        etag = r.headers["ETag"]
        items = {i["name"]: i for i in r.json()}
        assert items == {i["name"]: i for i in client.get("/jobs").json()}  # the same listing without a validator
        return items

    items = changed(lambda: folder.job_file("job-01", "job_info.json", json.dumps({"run_name": "r-1"})))  # running
    assert items["job-01"]["job_info"]["run_name"] == "r-1"
    items = changed(lambda: folder.store.write_job_info("job-02", {"mlflow_run_id": "abc"}))  # a finished job's record
    assert items["job-02"]["job_info"]["mlflow_run_id"] == "abc" and items["job-01"]["job_info"]["run_name"] == "r-1"
    statuses = [folder.status(f"job-{i:02d}", phase="Succeeded" if i == 1 else "Stopped") for i in range(25)]
    items = changed(lambda: folder.track(statuses))  # phase changes
    assert items["job-01"]["status"] == "finished" and items["job-04"]["phase"] == "Stopped"
    items = changed(lambda: folder.track([*statuses, folder.status("new-job", phase="Pending")]))  # a new job
    assert items["new-job"]["status"] == "queued" and len(items) == 26
    items = changed(lambda: DataStore.open(folder.root).mark_deleted("job-05"))  # deleted through the API
    assert "job-05" not in items and len(items) == 25
    assert client.get("/jobs", headers={"If-None-Match": etag}).status_code == 304


def test_list_durations_of_a_running_job_advance_by_ticks(api, monkeypatch):
    monkeypatch.setattr("api.listrows.LIVE_TICK", 0.5)
    api.folder.track([api.folder.status("runs", startedAt=utcnow(), submittedAt=utcnow())])
    first = api.client.get("/jobs")
    etag, duration = first.headers["ETag"], first.json()[0]["run_duration_seconds"]
    time.sleep(0.6)
    later = api.client.get("/jobs", headers={"If-None-Match": etag})
    assert later.status_code == 200 and later.json()[0]["run_duration_seconds"] > duration


def test_list_rejects_bad_filters(listed):
    for params in ({"phase": "Exploded"}, {"label": "=v"}, {"limit": 0}, {"limit": "x"}):
        r = listed.client.get("/jobs", params=params)
        assert r.status_code == 422 and r.json()["detail"], params


# ---- delete ------------------------------------------------------------------------------------------------------
def test_delete_removes_the_spec_file(api):
    api.folder.spec("j1", file="sub/j1.json")
    api.folder.status("j1", specFile="sub/j1.json")
    r = api.client.delete("/jobs/j1")
    assert r.status_code == 200 and r.json()["action"] == "deleted" and r.json()["specFile"] == "sub/j1.json"
    assert not (api.folder.specs / "sub/j1.json").exists()
    assert api.client.delete("/jobs/j1").status_code == 404


# ---- stop / resume / rerun ---------------------------------------------------------------------------------------
def test_stop_rewrites_only_suspend_and_keeps_comments(api):
    api.client.put("/jobs/ppo-seed-42", content=SPEC_YAML)
    r = api.client.post("/jobs/ppo-seed-42/stop")
    assert r.status_code == 200 and r.json()["action"] == "updated" and r.json()["suspend"] is True
    text = (api.folder.specs / "ppo-seed-42.yaml").read_text()
    assert text == SPEC_YAML + "  suspend: true\n"
    r = api.client.post("/jobs/ppo-seed-42/stop")
    assert r.json()["action"] == "unchanged"
    r = api.client.post("/jobs/ppo-seed-42/resume")
    assert r.json()["suspend"] is False
    assert (api.folder.specs / "ppo-seed-42.yaml").read_text() == SPEC_YAML + "  suspend: false\n"


def test_stop_keeps_the_generation(api):
    created = api.client.put("/jobs/ppo-seed-42", content=SPEC_YAML).json()
    stopped = api.client.post("/jobs/ppo-seed-42/stop").json()
    assert stopped["generation"] == created["generation"]


def test_resume_of_a_running_job_changes_nothing(api):
    api.folder.spec("j1")
    r = api.client.post("/jobs/j1/resume")
    assert r.status_code == 200 and r.json()["action"] == "unchanged"


def test_rerun_sets_a_new_run_id_and_unsuspends(api):
    path = api.folder.spec("j1", file="j1.json", suspend=True)
    first = api.client.post("/jobs/j1/rerun").json()
    second = api.client.post("/jobs/j1/rerun").json()
    assert first["runId"] and second["runId"] and first["runId"] != second["runId"]
    doc = json.loads(path.read_text())
    assert doc["spec"] == {"image": "busybox", "suspend": False, "runId": second["runId"]}


def test_stop_of_an_invalid_spec_is_a_conflict(api):
    api.folder.spec("j1", text="apiVersion: opeva/v1\nkind: Job\nmetadata: {name: j1}\nspec: {imag: x}\n")
    r = api.client.post("/jobs/j1/stop")
    assert r.status_code == 409 and "invalid" in r.json()["detail"]


def test_stop_without_a_spec_file_is_404(api):
    api.folder.status("j1", phase="Stopped", reason="SpecDeleted")
    r = api.client.post("/jobs/j1/stop")
    assert r.status_code == 404 and "no spec file" in r.json()["detail"]


# ---- events, progress, result ------------------------------------------------------------------------------------
def test_events_in_order_with_limit(api):
    api.folder.status("j1")
    api.folder.store.append_events("j1", [Event(time=utcnow(), reason=f"R{i}", message=f"m{i}") for i in range(5)])
    assert [e["reason"] for e in api.client.get("/jobs/j1/events").json()] == ["R0", "R1", "R2", "R3", "R4"]
    assert [e["reason"] for e in api.client.get("/jobs/j1/events", params={"limit": 2}).json()] == ["R3", "R4"]


def test_progress_and_result(api):
    api.folder.status("j1")
    assert api.client.get("/jobs/j1/progress").status_code == 404
    assert api.client.get("/jobs/j1/result").status_code == 404
    api.folder.job_file("j1", "progress/progress.json", json.dumps({"percent": 45, "stage": "training"}))
    api.folder.job_file("j1", "results/result.json", json.dumps({"reward": 1.5}))
    assert api.client.get("/jobs/j1/progress").json() == {"percent": 45, "stage": "training"}
    assert api.client.get("/jobs/j1/result").json() == {"reward": 1.5}


def test_half_written_progress_is_a_conflict_not_a_crash(api):
    api.folder.status("j1")
    api.folder.job_file("j1", "progress/progress.json", '{"percent": 4')
    r = api.client.get("/jobs/j1/progress")
    assert r.status_code == 409 and "not valid JSON" in r.json()["detail"]


def test_a_job_cannot_make_the_api_read_outside_the_data_folder(api, tmp_path):
    secret = tmp_path / "secret.json"
    secret.write_text('{"password": "hunter2"}')
    api.folder.status("j1")
    link = api.folder.store.job_dir("j1") / "results" / "result.json"
    link.symlink_to(secret)
    r = api.client.get("/jobs/j1/result")
    assert r.status_code == 409 and "hunter2" not in r.text
    r = api.client.get("/result/j1")
    assert r.status_code == 409 and "hunter2" not in r.text


def test_a_fifo_is_not_served(api):
    import os

    api.folder.status("j1")
    os.mkfifo(api.folder.store.progress_path("j1"))
    r = api.client.get("/jobs/j1/progress")
    assert r.status_code == 409 and "regular file" in r.json()["detail"]


# ---- read-your-writes ------------------------------------------------------------------------------------------
def test_a_job_written_through_the_api_is_listed_at_once_until_it_is_deleted(api):
    labeled = yaml.safe_dump(
        {
            "apiVersion": "opeva/v1",
            "kind": "Job",
            "metadata": {"name": "ryw-a", "labels": {"t": "ryw"}},
            "spec": {"image": "busybox"},
        }
    )
    assert (
        api.client.put("/jobs/ryw-a", content=labeled, headers={"Content-Type": "application/yaml"}).status_code == 201
    )
    assert (
        api.client.post("/jobs", content=yaml_spec("ryw-b"), headers={"Content-Type": "application/yaml"}).status_code
        == 201
    )
    rows = {r["name"]: r for r in api.client.get("/jobs").json()}
    assert {n: (r["phase"], r["status"]) for n, r in rows.items()} == {
        "ryw-a": ("Pending", "queued"),
        "ryw-b": ("Pending", "queued"),
    }
    assert [r["name"] for r in api.client.get("/jobs", params={"label": "t=ryw", "phase": "Pending"}).json()] == [
        "ryw-a"
    ]
    assert api.client.delete("/jobs/ryw-b").status_code == 200
    assert [r["name"] for r in api.client.get("/jobs").json()] == ["ryw-a"]
