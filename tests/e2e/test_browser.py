"""A person in a real browser (Debian's Chromium, headless, driven through its chromedriver by
Selenium): open the email link, see the current state, choose "no marketing SMS", submit, see the
confirmation; the choice then reaches Experience CRM. Screenshots of each page go to build/screenshots/
(``make screenshots`` writes them to docs/screenshots/, which the README shows).

Needs /usr/bin/chromium and /usr/bin/chromedriver (Debian's chromium and chromium-driver packages;
.ci/run installs them). Nothing is downloaded: Selenium is given the driver's path.
"""

import os
import secrets
import shutil
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

from tests.e2e.stack import ADMIN_TOKEN, ROOT
from tests.e2e.test_sms import new_phone
from tests.helpers import PUBLIC_BASE_URL

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SCREENSHOTS = Path(os.environ.get("RECEIVER_SCREENSHOTS") or ROOT / "build" / "screenshots")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail("Chromium is not installed: apt-get install chromium chromium-driver (.ci/run does it)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=420,900", "--lang=en-US"):
        options.add_argument(argument)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium')}")
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def shoot(driver, name: str, tmp_path: Path) -> None:
    """Save a screenshot of the page as it is now."""
    target = tmp_path / f"{name}.png"
    driver.save_screenshot(str(target))
    assert target.stat().st_size > 5000  # a rendered page, not a blank one
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(target, SCREENSHOTS / f"{name}.png")


def test_a_guest_chooses_no_marketing_sms_in_a_browser(stack, browser, tmp_path):
    email, phone = f"guest-{secrets.token_hex(5)}@example.com", new_phone()
    resp = stack.http.post(f"{stack.web_url}/v1/links", timeout=10,
                           headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                           json={"tenant": "grand", "email": email, "phone": phone})
    url = stack.web_url + resp.json()["url"].removeprefix(PUBLIC_BASE_URL)

    browser.get(url)
    assert "Your preferences" in browser.title
    # The page's Content-Security-Policy still lets its own inline style apply (allowed by its hash).
    assert browser.execute_script("return getComputedStyle(document.body).backgroundColor") == "rgb(244, 244, 242)"
    assert browser.find_element(By.ID, "in-force").text == "You are not opted out of anything yet."
    assert email not in browser.page_source
    shoot(browser, "1-preferences", tmp_path)
    assert stack.deliveries(email) == [] and stack.deliveries(phone) == []  # opening it changed nothing

    browser.find_element(By.CSS_SELECTOR, "input[value=marketing_decline_sms]").click()
    shoot(browser, "2-choice", tmp_path)
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()

    status = WebDriverWait(browser, 20).until(  # the answer page replaces this one
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "[role=status]")))
    assert "Saved." in status.text
    in_force = [li.get_attribute("data-state") for li in browser.find_elements(By.CSS_SELECTOR, "#in-force li")]
    assert in_force == ["marketing_decline_sms"]
    box = browser.find_element(By.CSS_SELECTOR, "input[value=marketing_decline_sms]")
    assert box.get_attribute("checked") and not box.is_enabled()
    shoot(browser, "3-confirmation", tmp_path)

    [delivery] = stack.settled(phone)
    assert delivery.crm == "experience" and delivery.status == "done"
    records = [r for c in stack.calls("experience") for r in c.get("records") or [] if r.get("phone") == phone]
    assert len(records) == 1 and "marketing_decline_sms" in records[0] and records[0]["email"] == email


def test_the_page_in_french(stack, browser, tmp_path):
    resp = stack.http.post(f"{stack.web_url}/v1/links", timeout=10, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                           json={"tenant": "grand", "email": "invite@example.com"})
    browser.get(stack.web_url + resp.json()["url"].removeprefix(PUBLIC_BASE_URL) + "?lang=fr")
    assert "Vos préférences" in browser.title
    assert browser.find_element(By.CSS_SELECTOR, "button[type=submit]").text == "Enregistrer mes choix"
    shoot(browser, "4-french", tmp_path)
