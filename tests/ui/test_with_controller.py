"""The dashboard of a real `opeva run` (controller + API, with a token) over a real Docker engine, in headless chromium:
login, a progress bar that moves, a log tail that grows, a stop from the page that stops the container."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from e2e.harness import (
    ControllerProcess,
    cleanup_containers,
    containers,
    free_port,
    job_name,
    read_status,
    shell_spec,
    wait_for,
    wait_phase,
    write_spec,
)
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from .conftest import screenshot

pytestmark = pytest.mark.docker

TOKEN = "ui-e2e-token"
TRAINER = r"""
i=0
while [ $i -lt 400 ]; do
  i=$((i+1))
  printf '{"percent": %s, "stage": "training", "reward": %s, "loss": %s}' $((i/4)) $((i*i%17)) $((400-i)) \
    > $OPEVA_JOB_DIR/progress/.p && mv $OPEVA_JOB_DIR/progress/.p $OPEVA_JOB_DIR/progress/progress.json
  echo "step $i"
  sleep 0.3
done
"""


@pytest.fixture(scope="module")
def opeva(docker_engine, tmp_path_factory) -> Iterator[ControllerProcess]:
    data = tmp_path_factory.mktemp("ui-e2e") / "data"
    ctl = ControllerProcess(data, port=free_port(), env={"OPEVA_API_TOKEN": TOKEN}).start()
    try:
        wait_for(lambda: (read_json(data) or {}).get("docker"), 30, what="the controller to see Docker")
        yield ctl
    finally:
        ctl.stop()
        cleanup_containers()


def read_json(data):
    from e2e.harness import read_json_file

    return read_json_file(data / ".opeva" / "heartbeat.json")


def wait(driver: WebDriver, check, timeout: float = 20):
    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(lambda d: check(d))


def js(driver: WebDriver, script: str, *args):
    return driver.execute_script(script, *args)


def progress_value(driver: WebDriver, css: str) -> float:
    value = js(driver, "const e = document.querySelector(arguments[0]); return e ? e.value : -1", css)
    return float(value)


def log_in(driver: WebDriver, url: str, target: str = "/ui") -> None:
    driver.get(f"{url}{target}")
    wait(driver, lambda d: "/ui/login" in d.current_url)
    field = driver.find_element(By.ID, "token")
    field.send_keys(TOKEN)
    field.submit()
    wait(driver, lambda d: "/ui/login" not in d.current_url)


def test_login_exchanges_the_token_for_a_session_and_nothing_works_without_one(browser, opeva):
    url = opeva.url
    browser.get(f"{url}/ui")
    wait(browser, lambda d: "/ui/login" in d.current_url)
    browser.find_element(By.ID, "token").send_keys("wrong")
    browser.find_element(By.CSS_SELECTOR, "form.login button").click()
    wait(browser, lambda d: "not valid" in d.find_element(By.CSS_SELECTOR, ".error").text)
    assert browser.get_cookie("opeva_session") is None
    log_in(browser, url, "/ui/hosts")
    assert browser.current_url.endswith("/ui/hosts")  # back where the login started
    cookie = browser.get_cookie("opeva_session")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    wait(browser, lambda d: d.find_element(By.ID, "live").get_attribute("data-state") == "ok")
    screenshot(browser, "hosts")

    with httpx.Client(base_url=url, follow_redirects=False) as anonymous:
        assert anonymous.get("/ui").status_code == 303
        assert anonymous.get("/ui/rows", headers={"HX-Request": "true"}).status_code == 401
        assert anonymous.post("/ui/jobs/anything/stop").status_code == 401
        assert anonymous.get("/jobs").status_code == 401  # the JSON API still wants the bearer token
        anonymous.cookies.set("opeva_session", "1.forged.signature", path="/ui")
        assert anonymous.get("/ui").status_code == 303
    with httpx.Client(base_url=url, follow_redirects=False) as session:
        session.cookies.set("opeva_session", cookie["value"], path="/ui")
        assert session.get("/ui").status_code == 200
        assert session.post("/ui/jobs/anything/stop", data={"csrf": "forged"}).status_code == 403


def test_progress_moves_the_log_grows_and_stop_from_the_page_stops_the_job(browser, opeva):
    url, data = opeva.url, opeva.data
    name = job_name("trainer")
    write_spec(data, shell_spec(name, TRAINER, terminationGracePeriodSeconds=1, labels={"experiment": "ui"}))
    wait_phase(data, name, "Running", timeout=60)
    log_in(browser, url, f"/ui?q={name}")
    row_bar = f'tr[data-job="{name}"] progress'
    wait(browser, lambda d: progress_value(d, row_bar) > 0)
    js(browser, "window.__same_page = true")
    first = progress_value(browser, row_bar)
    wait(browser, lambda d: progress_value(d, row_bar) > first)  # the list's bar moves without a reload
    assert js(browser, "return window.__same_page") is True
    screenshot(browser, "list-running")

    browser.find_element(By.LINK_TEXT, name).click()
    wait(browser, lambda d: "step " in js(d, "const l = document.getElementById('log'); return l ? l.innerText : ''"))
    js(browser, "window.__same_page = true")
    seen = js(browser, "return document.getElementById('log').innerText").count("step ")
    wait(browser, lambda d: js(d, "return document.getElementById('log').innerText").count("step ") >= seen + 5)
    before = progress_value(browser, "#job-progress progress")
    wait(browser, lambda d: progress_value(d, "#job-progress progress") > before)
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "figure.chart")) >= 3)  # percent, reward, loss
    assert js(browser, "return window.__same_page") is True
    wait(
        browser, lambda d: "CPU" in js(d, "const u = document.getElementById('job-usage'); return u ? u.innerText : ''")
    )
    screenshot(browser, "job-running")

    browser.find_element(By.ID, "action-stop").click()
    alert = WebDriverWait(browser, 5).until(expected_conditions.alert_is_present())
    assert name in alert.text
    alert.accept()
    wait(browser, lambda d: "done=stop" in d.current_url)
    status = wait_phase(data, name, "Stopped", timeout=60)
    assert status["reason"]
    wait_for(lambda: all(c["State"] != "running" for c in containers(name)), 30, what="the container to stop")
    wait(browser, lambda d: js(d, "return document.getElementById('job-phase').dataset.phase") == "Stopped")
    assert read_status(data, name)["phase"] == "Stopped"
    screenshot(browser, "job-stopped")
