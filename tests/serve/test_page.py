"""The web page in a real headless Chromium (Debian's chromium + chromium-driver, driven by Selenium)."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.serve.helpers import serving

CHROMEDRIVER = "/usr/bin/chromedriver"
BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    BROWSER is None or not os.path.exists(CHROMEDRIVER),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; CI installs them)",
)


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = BROWSER
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1100,900",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_upload_an_image_and_see_its_ranked_caption(browser, builtin_model, scene_files, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    with serving(builtin_model) as url:
        browser.get(url + "/")
        wait = WebDriverWait(browser, 60)
        wait.until(ready.text_to_be_present_in_element((By.ID, "models"), "captioner builtin"))
        assert not browser.find_element(By.ID, "prompt").is_displayed()  # the built-in model takes no prompt
        assert not browser.find_element(By.ID, "key").is_displayed()  # no --api-key
        candidates = browser.find_element(By.ID, "candidates")
        candidates.clear()
        candidates.send_keys("3")
        browser.find_element(By.ID, "files").send_keys(str(scene_files[0]))
        wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, ".result .caption-row .caption")))
        caption = browser.find_element(By.CSS_SELECTOR, ".result .caption-row .caption").text
        rows = browser.find_elements(By.CSS_SELECTOR, ".result table tr")
        assert caption and caption != "captioning..." and 1 <= len(rows) <= 3
        assert caption in rows[0].text  # the chosen caption is the top-ranked candidate
        assert browser.find_element(By.CSS_SELECTOR, ".result button.copy").text == "Copy"
        assert "captioned 1 image" in browser.find_element(By.ID, "status").text
        # a file that is not an image gets its error shown on the page, not a silent failure
        bad = tmp_path / "notes.png"
        bad.write_text("<html>not an image</html>")
        browser.find_element(By.ID, "files").send_keys(str(bad))
        wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, ".result .error")))
        assert "notes.png: not an image" in browser.find_element(By.CSS_SELECTOR, ".result .error").text
