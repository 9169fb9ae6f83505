"""The dashboard over a data folder written through controller.store (the shapes the controller writes), served by a
real uvicorn server and read by a real headless chromium: the list, filters, sorting, live updates, XSS."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from api.app import create_app
from api.server import bound_port, start_in_thread, stop
from controller.status import AttemptRecord, JobStatus, utcnow
from controller.store import DataStore

from .conftest import screenshot

PHASES = ("Pending", "Running", "Succeeded", "Failed", "Stopped")
XSS = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">'


def write_job(store: DataStore, name: str, phase: str, labels: dict[str, str], minutes_ago: int = 5) -> JobStatus:
    now = utcnow()
    started = now - timedelta(minutes=minutes_ago)
    (store.specs_dir / f"{name}.yaml").write_text(
        json.dumps(
            {
                "apiVersion": "opeva/v1",
                "kind": "Job",
                "metadata": {"name": name, "labels": labels},
                "spec": {"image": "busybox"},
            }
        )
    )
    container = f"opeva-x-{name}-1"
    history = []
    if phase in ("Succeeded", "Failed", "Stopped"):
        history.append(
            AttemptRecord(
                attempt=1,
                generation="g",
                containerName=container,
                startedAt=started,
                finishedAt=now,
                exitCode=0 if phase == "Succeeded" else 3,
                outcome=phase,
                reason={"Succeeded": "Completed", "Failed": "Error", "Stopped": "Stopped"}[phase],
            )
        )
    st = JobStatus(
        name=name,
        phase=phase,
        reason=history[0].reason if history else ("QueueFull" if phase == "Pending" else None),
        attempts=0 if phase == "Pending" else 1,
        containerName=None if phase == "Pending" else container,
        submittedAt=started,
        startedAt=None if phase == "Pending" else started,
        finishedAt=now if history else None,
        updatedAt=now,
        labels=labels,
        history=history,
    )
    store.write_status(st)
    return st


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[tuple[str, DataStore]]:
    store = DataStore.open(tmp_path_factory.mktemp("ui") / "data")
    statuses = {}
    for i, phase in enumerate(PHASES):
        for k in range(2):
            name = f"{phase.lower()}-{k}"
            statuses[name] = write_job(
                store, name, phase, {"team": "red" if k == 0 else "blue", "idx": str(i)}, minutes_ago=10 * (i + 1) + k
            )
    statuses["xss-job"] = write_job(store, "xss-job", "Running", {"note": XSS})
    store.job_dir("xss-job").joinpath("progress/progress.json").write_text(json.dumps({"percent": 10, "stage": XSS}))
    store.job_dir("xss-job").joinpath("results/result.json").write_text(json.dumps({"reward": XSS}))
    store.log_path("xss-job").write_text(f"===== opeva: job xss-job attempt 1 container c started\n{XSS}\n")
    store.append_events("xss-job", [])
    store.write_job_track(statuses)
    server, thread = start_in_thread(create_app(store.root, store.specs_dir), "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{bound_port(server)}", store
    finally:
        stop(server, thread)


def rows(driver: WebDriver) -> list[str]:
    """The job names in the table, read in one go (the live poll replaces the rows under selenium's feet)."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('tbody#rows tr[data-job]')).map(t => t.dataset.job)"
    )


def text(driver: WebDriver, css: str) -> str:
    return driver.execute_script("const e = document.querySelector(arguments[0]); return e ? e.innerText : ''", css)


def wait(driver: WebDriver, check, timeout: float = 10):
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: check(d))


def test_the_list_shows_every_phase_with_icon_and_word(browser, site):
    url, _ = site
    browser.get(f"{url}/ui")
    names = rows(browser)
    assert len(names) == 11
    seen = set(
        browser.execute_script(
            "return Array.from(document.querySelectorAll('tbody#rows tr')).map(t => t.dataset.phase)"
        )
    )
    assert seen == set(PHASES)
    failed = text(browser, 'tr[data-job="failed-0"] .badge')
    assert failed.endswith("Failed") and "✖" in failed  # the word and an icon, not colour alone
    assert "Error" in text(browser, 'tr[data-job="failed-0"]')
    wait(browser, lambda d: d.find_element(By.ID, "live").get_attribute("data-state") == "ok")  # the poll answered
    screenshot(browser, "list-seeded")


def test_filters_by_phase_label_and_text_and_sorting(browser, site):
    url, _ = site
    browser.get(f"{url}/ui")
    browser.find_element(By.CSS_SELECTOR, 'input[name=phase][value="Failed"]').click()
    browser.find_element(By.CSS_SELECTOR, 'input[name=phase][value="Running"]').click()
    browser.find_element(By.CSS_SELECTOR, ".filters button[type=submit]").click()
    wait(browser, lambda d: "phase=Failed" in d.current_url)
    assert sorted(rows(browser)) == ["failed-0", "failed-1", "running-0", "running-1", "xss-job"]
    label = browser.find_element(By.NAME, "label")
    label.send_keys("team=red")
    browser.find_element(By.CSS_SELECTOR, ".filters button[type=submit]").click()
    wait(browser, lambda d: "label=team" in d.current_url)
    assert sorted(rows(browser)) == ["failed-0", "running-0"]
    browser.get(f"{url}/ui?q=succeeded")
    assert sorted(rows(browser)) == ["succeeded-0", "succeeded-1"]
    browser.get(f"{url}/ui?sort=age")
    ages = rows(browser)
    assert ages[0] == "stopped-1" and ages.index("pending-0") > ages.index("stopped-0")  # oldest first
    browser.find_element(By.LINK_TEXT, "Age ▲").click()  # by keyboard-reachable link: the order flips
    wait(browser, lambda d: "desc=1" in d.current_url)
    assert rows(browser)[-1] == "stopped-1"
    browser.get(f"{url}/ui?label=%3Dbad")
    assert "Label selector" in browser.find_element(By.CSS_SELECTOR, ".error").text


def test_live_updates_show_a_new_job_without_a_reload(browser, site):
    url, store = site
    browser.get(f"{url}/ui?phase=Pending")
    assert len(rows(browser)) == 2
    browser.execute_script("window.__same_page = true")
    st = write_job(store, "pending-new", "Pending", {"team": "red"})
    statuses = {s.name: s for s in (store.read_status(n) for n in store.recorded_jobs()) if s}
    store.write_job_track({**statuses, st.name: st})
    wait(browser, lambda d: "pending-new" in rows(d))
    assert browser.execute_script("return window.__same_page") is True


def test_injected_markup_is_shown_as_text_and_never_runs(browser, site):
    url, _ = site
    browser.get(f"{url}/ui?q=xss")
    assert XSS in text(browser, 'tr[data-job="xss-job"]').replace("\n", "")
    browser.get(f"{url}/ui/jobs/xss-job")
    wait(browser, lambda d: XSS in text(d, "#log"))
    assert json.dumps(XSS) in text(browser, "#result")  # the JSON, its quotes escaped, as text
    assert XSS in text(browser, "#job-progress")
    page = text(browser, "main")
    assert page.count("<script>") >= 3
    assert browser.execute_script("return window.__xss === undefined")
    assert browser.find_elements(By.CSS_SELECTOR, "main img") == []
    screenshot(browser, "job-xss")


def test_the_session_cookie_is_secure_when_the_page_came_over_https(site):
    url, _ = site
    with httpx.Client(base_url=url) as client:
        plain = client.get("/ui").headers["set-cookie"].lower()
    with httpx.Client(base_url=url, headers={"X-Forwarded-Proto": "https"}) as client:  # a TLS proxy on loopback
        proxied = client.get("/ui").headers["set-cookie"].lower()
    assert "secure" not in plain.split("; ") and "httponly" in plain
    assert "secure" in proxied.split("; ") and "samesite=strict" in proxied


def test_an_action_without_csrf_or_session_is_refused(site):
    url, store = site
    before = (store.specs_dir / "running-0.yaml").read_text()
    with httpx.Client(base_url=url) as client:
        assert client.post("/ui/jobs/running-0/stop").status_code == 401  # no session
        client.get("/ui")  # without a token, a page view gives a session
        assert client.cookies.get("opeva_session")
        forged = client.post("/ui/jobs/running-0/stop", data={"csrf": "forged"})
        assert forged.status_code == 403
        assert client.post("/ui/jobs/running-0/stop").status_code == 403
    assert (store.specs_dir / "running-0.yaml").read_text() == before
