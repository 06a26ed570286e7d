"""The personalise panel in a real browser (issue 13): Chromium with the fake camera (test_web_browser.py's set-up)
against `python realtime.py ui=web` with a tiny model and a small synthetic FER2013 on disk. The page takes a burst of
photos of one class and single shots (the P key) of a new class, deletes one from its thumbnails, starts a one-epoch
fine-tune, shows its progress and report, finds the job again after a reload, and switches the live view to the new
model, which then answers the frames."""

from __future__ import annotations

import os
import time
from pathlib import Path

import cv2
import pytest
from conftest import train_tiny_checkpoint
from test_folders import write_fer2013_csv
from test_realtime_app import patches  # noqa: F401  (fixtures, used by name)
from test_web_browser import browser, camera, running_server, wait_for  # noqa: F401

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path):
    """The real server with a tiny model; FER2013 (synthetic, small) where the panel looks for it. Yields the page's
    address."""
    ckpt = train_tiny_checkpoint(tmp_path / "tiny.ckpt")
    write_fer2013_csv(tmp_path / "data" / "fer2013" / "fer2013.csv", {"Training": 6, "PublicTest": 2, "PrivateTest": 2})
    overrides = f"ui.models_dir={tmp_path / 'outputs'}", f"paths.data_dir={tmp_path / 'data'}"
    with running_server(tmp_path, ckpt, *overrides) as address:
        yield address


def count(driver, label: str) -> int:
    return driver.execute_script(
        f"const e = document.querySelector('.p-count[data-class=\"{label}\"]'); return e ? +e.textContent : 0"
    )


def test_capture_finetune_report_and_switch_in_the_page(server, browser, tmp_path):  # noqa: F811
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.support.ui import Select

    driver = browser
    driver.get(server)
    wait_for(driver, "window.mimicStats && mimicStats.lastDrawn && mimicStats.lastDrawn.faces.length", 90, "face")
    wait_for(driver, "document.querySelectorAll('#p-class option').length > 1", 20, "the class picker")
    picker = "({value: document.getElementById('p-class').value, box: !document.getElementById('p-new-class').hidden})"
    first = driver.execute_script("return mimic.classes[0]")
    assert driver.execute_script(f"return {picker}") == {"value": first, "box": False}  # no photos: the model's first

    # a burst of photos of one of the model's classes, with its countdown
    Select(driver.find_element("id", "p-class")).select_by_value("happy")
    for field, value in (("p-count", "6"), ("p-interval", "0.3")):
        box = driver.find_element("id", field)
        box.clear()
        box.send_keys(value)
    driver.find_element("id", "p-burst").click()
    wait_for(driver, "!document.getElementById('p-countdown').hidden", 5, "the countdown")
    wait_for(driver, "document.getElementById('p-countdown').hidden", 30, "the end of the burst")
    assert count(driver, "happy") >= 4

    # a new class, one photo per press of P
    Select(driver.find_element("id", "p-class")).select_by_value("__new__")
    driver.find_element("id", "p-new-class").send_keys("tongue_out")
    driver.find_element("tag name", "body").click()  # the key works outside text fields
    for _ in range(6):
        ActionChains(driver).send_keys("p").perform()
        time.sleep(0.6)
    wait_for(driver, "+(document.querySelector('.p-count[data-class=\"tongue_out\"]') || {}).textContent >= 5", 10,
             "the new class's photos")  # fmt: skip
    webcam = tmp_path / "data" / "webcam"
    assert sorted(p.name for p in webcam.iterdir()) == ["0_happy", "1_tongue_out"]

    # a thumbnail deletes its photo
    before = count(driver, "tongue_out")
    thumb = driver.find_element("css selector", '.p-thumb[data-class="tongue_out"]')
    name = thumb.get_attribute("data-file")
    thumb.click()
    wait_for(driver, f"+document.querySelector('.p-count[data-class=\"tongue_out\"]').textContent === {before - 1}", 10,
             "the deletion")  # fmt: skip
    assert not (webcam / "1_tongue_out" / name).exists()

    # a one-epoch fine-tune: progress, then the report
    assert driver.find_element("id", "p-fer2013-note").text.startswith("on disk")
    epochs = driver.find_element("id", "p-epochs")
    epochs.clear()
    epochs.send_keys("1")
    driver.find_element("id", "p-start").click()
    wait_for(driver, "document.getElementById('personalise').dataset.job === 'running'", 20, "a running job")
    assert driver.find_element("id", "p-cancel").is_displayed()
    wait_for(driver, "document.getElementById('personalise').dataset.job === 'done'", 300, "the job's end")
    assert len(driver.find_elements("css selector", "#p-epochs-table tbody tr")) == 1
    report = driver.find_element("id", "p-report")
    assert "held-out photos" in report.text and len(report.find_elements("css selector", ".p-matrix")) == 2
    assert "FER2013 test" in report.text

    # a reload finds the job again, with its report
    driver.refresh()
    wait_for(driver, "document.getElementById('personalise').dataset.job === 'done'", 30, "the job after a reload")
    wait_for(driver, "document.querySelectorAll('#p-report .p-matrix').length === 2", 10, "the report after a reload")
    wait_for(driver, "document.querySelector('.p-count')", 10, "the photos after a reload")
    assert first != "happy" and driver.execute_script(f"return {picker}") == {"value": "happy", "box": False}

    # one click: the live view answers with the new model
    wait_for(driver, "window.mimicStats && mimicStats.lastResult", 60, "live answers after the reload")
    job = driver.execute_script("return mimic.apiJson('api/finetune').then(r => r.jobs[0])")
    new = job["model"]["id"]
    assert job["classes"][-1] == "tongue_out" and new != driver.execute_script("return mimic.currentModelId")
    driver.find_element("id", "p-use").click()
    wait_for(driver, f"mimic.currentModelId === {new!r}", 30, "the switch")
    wait_for(driver, f"mimicStats.lastResult && mimicStats.lastResult.model === {new!r}", 30, "the new model's answer")
    assert "tongue_out" in driver.execute_script("return mimic.classes")

    shot = tmp_path / "personalise.png"
    driver.save_screenshot(str(shot))
    if os.environ.get("MIMIC_SCREENSHOT_DIR"):
        Path(os.environ["MIMIC_SCREENSHOT_DIR"], "personalise.png").write_bytes(shot.read_bytes())
    assert cv2.imread(str(shot), cv2.IMREAD_GRAYSCALE).std() > 15
    problems = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not problems, problems
