"""The console in a real Chromium: an agent signs in, records a phone-call opt-out that reaches CRM Text,
finds the guest, and honours a text waiting for review. Screenshots go where test_browser.py puts its own."""

import secrets

from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait

from tests.e2e.stack import wait_until
from tests.e2e.test_browser import browser, shoot  # noqa: F401 (the fixture is used by name)
from tests.e2e.test_sms import new_phone, new_sid
from tests.e2e.test_staff import operator_cli

PASSWORD = "correct horse battery staple"


def answer(driver, element_id: str) -> str:
    """The text of the answer page's ``element_id`` once the POST's page has replaced the form.

    A click returns before the next page has loaded when the machine is busy, so wait for it; a
    page that answered with a problem instead fails with the problem's text."""
    def loaded(page):
        found = page.find_elements(By.ID, element_id) or page.find_elements(By.CSS_SELECTOR, ".problem")
        return found[0] if found else False
    shown = WebDriverWait(driver, 20).until(loaded, message=f"no #{element_id} after the POST")
    assert shown.get_attribute("id") == element_id, shown.text
    return shown.text


def test_an_agent_works_the_console_in_a_browser(stack, browser, tmp_path):  # noqa: F811
    email = f"desk-{secrets.token_hex(4)}@grand.example"
    operator_cli(stack, "add", email, "--role", "agent", "--tenant", "grand", "--password-stdin",
                 stdin=PASSWORD + "\n")
    flagged = new_phone()
    stack.sms("stop by the pool at 5", flagged, sid=new_sid())

    browser.get(f"{stack.web_url}/console")
    assert browser.current_url.endswith("/console/login")
    browser.find_element(By.ID, "email").send_keys(email)
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    shoot(browser, "console-sign-in", tmp_path)
    browser.find_element(By.CSS_SELECTOR, "form.card button[type=submit]").click()
    WebDriverWait(browser, 20).until(lambda driver: email in driver.find_element(By.CSS_SELECTOR, "nav").text,
                                     message="the console's nav naming the signed-in agent")

    phone = new_phone()
    browser.get(f"{stack.web_url}/console/opt-outs")
    browser.find_element(By.ID, "phone").send_keys(phone)
    browser.find_element(By.CSS_SELECTOR, "input[value=sms_ban]").click()
    browser.find_element(By.ID, "note").send_keys("guest called reception")
    shoot(browser, "console-opt-out", tmp_path)
    browser.find_element(By.CSS_SELECTOR, "form.card button[type=submit]").click()
    assert answer(browser, "recorded").startswith("Recorded")
    wait_until(lambda: stack.opt_out_calls(phone[2:]), timeout=30, message="optoutcustomer at CRM Text")

    browser.get(f"{stack.web_url}/console?tenant=grand&phone={phone.replace('+', '%2B')}")
    guest = browser.find_element(By.ID, "guest").text
    assert "sms_ban" in guest and "staff" in guest and email in guest
    shoot(browser, "console-guest", tmp_path)

    browser.get(f"{stack.web_url}/console/review")
    item = next(i for i in browser.find_elements(By.CSS_SELECTOR, ".item") if flagged in i.text)
    shoot(browser, "console-review", tmp_path)
    item.find_element(By.CSS_SELECTOR, "button[value=honour]").click()
    assert answer(browser, "decided").startswith("Decided")
    wait_until(lambda: stack.opt_out_calls(flagged[2:]), timeout=30, message="the honoured ban at CRM Text")
