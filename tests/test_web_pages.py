"""The family's pages in a real headless chromium (Debian's, through Playwright) against the live app:
real uvicorn, real Redis ledger, SQLite, the sandbox gateway and a phone that receives the codes. Each
flow saves a screenshot under tests/artifacts/."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, Playwright, expect, sync_playwright

from tests.support.browser import CHROMIUM, DESKTOP, chromium, shot
from tests.support.web import Phone, config, live_app

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="chromium missing: run scripts/bootstrap.sh --test-services")
PASSWORD = "correct horse battery"
NUM = "+13125550100"


@pytest.fixture
def phone() -> Phone:
    return Phone()


@pytest.fixture
def base(redis_url: str, tmp_path: Path, phone: Phone) -> Iterator[str]:
    with live_app(config(redis_url, f"sqlite:///{tmp_path}/web.sqlite3", phone)) as url:
        yield url


@pytest.fixture
def pw() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture
def browser(pw: Playwright, tmp_path: Path) -> Iterator[BrowserContext]:
    with chromium(pw, tmp_path / "profile") as context:
        yield context


def sign_up(page: Page, base: str, email: str, mobile: str = "+13125550199") -> None:
    page.goto(f"{base}/signup")
    page.get_by_label("Name").fill("Pat Doe")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Mobile number").fill(mobile)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(f"{base}/accounts/new")


def claim(page: Page, phone: Phone, number: str = NUM) -> str:
    """Claim FAC-07 for `number`, verify with the code the phone got; returns the account id."""
    page.get_by_label("Facility").select_option("FAC-07")
    page.get_by_label("Your phone number that receives the calls").fill(number)
    page.get_by_role("button", name="Send a code").click()
    page.get_by_label("Code").fill(phone.last(number))
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("heading", name="Add money")).to_be_visible()
    return page.url.split("/accounts/")[1].split("/")[0]


def deposit_new_card(page: Page, amount: str = "25") -> None:
    page.get_by_label("Amount").fill(amount)
    page.get_by_label("Card number").fill("4111 1111 1111 1111")
    page.get_by_label("Expiry (MM/YY)").fill("12/30")
    page.get_by_label("Security code").fill("123")
    page.get_by_role("button", name="Pay").click()


def test_sign_up_verify_add_card_deposit_and_the_balance_shows_it(base: str, phone: Phone,
                                                                  browser: BrowserContext) -> None:
    page = browser.pages[0]
    page.goto(f"{base}/?q=FAC")
    expect(page.get_by_text("AdvancePay available").first).to_be_visible()
    shot(browser, "landing-320")
    sign_up(page, base, "pat@example.com")
    account = claim(page, phone)
    deposit_new_card(page, "0.50")                       # below the facility's minimum
    expect(page.locator("#amount-error")).to_contain_text("the amount must be between $1.00 and $300.00")
    shot(browser, "deposit-error-320")
    deposit_new_card(page, "25")
    expect(page.get_by_test_id("receipt-amount")).to_have_text("$25.00")
    shot(browser, "receipt-320")
    page.get_by_role("link", name="Back to your accounts").click()
    expect(page.locator(f"#acct-{account} [data-testid=balance]")).to_have_text("$25.00")
    shot(browser, "dashboard-320")
    page.goto(f"{base}/cards")                           # the new card is stored for next time
    expect(page.get_by_text("1111").first).to_be_visible()
    page.set_viewport_size(DESKTOP)
    page.goto(f"{base}/home")
    shot(browser, "dashboard-desktop")
    page.goto(f"{base}/accounts/{account}/deposit?lang=es")
    expect(page.get_by_role("heading", name="Agregar dinero")).to_be_visible()
    shot(browser, "deposit-es-desktop")


def test_autoreload_settings(base: str, phone: Phone, browser: BrowserContext) -> None:
    page = browser.pages[0]
    sign_up(page, base, "ar@example.com")
    account = claim(page, phone)
    deposit_new_card(page, "10")
    page.goto(f"{base}/accounts/{account}/autoreload")
    expect(page.get_by_test_id("reload-state")).to_have_text("AutoReload is off.")
    page.get_by_label("When the balance falls below").fill("5")
    page.get_by_label("add", exact=True).fill("0.10")   # below the minimum deposit: refused, nothing saved
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#amount-error")).to_be_visible()
    expect(page.get_by_test_id("reload-state")).to_have_text("AutoReload is off.")
    page.get_by_label("add", exact=True).fill("20")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_test_id("reload-state")).to_have_text("AutoReload is on.")
    shot(browser, "autoreload-320")
    page.goto(f"{base}/accounts/{account}/autoreload")     # read back from the store
    expect(page.get_by_label("add", exact=True)).to_have_value("20.00")
    page.get_by_role("button", name="Switch off").click()
    expect(page.get_by_test_id("reload-state")).to_have_text("AutoReload is off.")


def test_statement_chart_and_csv_download(base: str, phone: Phone, browser: BrowserContext) -> None:
    page = browser.pages[0]
    sign_up(page, base, "st@example.com")
    account = claim(page, phone)
    deposit_new_card(page, "25")
    page.goto(f"{base}/accounts/{account}/deposit")
    page.get_by_label("Amount").fill("12.34")
    page.get_by_role("button", name="Pay").click()      # the stored card is chosen by default
    expect(page.get_by_test_id("receipt-amount")).to_have_text("$12.34")
    page.goto(f"{base}/accounts/{account}/statement")
    expect(page.locator("svg.chart desc")).to_have_text("from $0.00 to $37.34, highest $37.34")
    shot(browser, "statement-320")
    with page.expect_download() as got:
        page.get_by_role("link", name="Download CSV").click()
    rows = list(csv.DictReader(io.StringIO(Path(got.value.path()).read_text())))
    assert [(r["kind"], r["amount_cents"], r["amount"]) for r in rows] == \
        [("deposit", "1234", "12.34"), ("deposit", "2500", "25.00")]


def test_a_wrong_password_is_refused_next_to_the_field(base: str, phone: Phone,
                                                      browser: BrowserContext) -> None:
    page = browser.pages[0]
    sign_up(page, base, "wp@example.com")
    page.get_by_role("button", name="Sign out").click()
    page.goto(f"{base}/home")
    expect(page).to_have_url(f"{base}/signin")            # signed out: the dashboard asks to sign in
    page.get_by_label("Email").fill("wp@example.com")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#password-error")).to_have_text("the email or the password is wrong")
    expect(page.get_by_label("Password")).to_have_attribute("aria-invalid", "true")
    shot(browser, "wrong-password-320")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{base}/home")


def test_a_second_holder_cannot_see_the_first_ones_account(base: str, phone: Phone, browser: BrowserContext,
                                                          pw: Playwright, tmp_path: Path) -> None:
    page = browser.pages[0]
    sign_up(page, base, "first@example.com")
    account = claim(page, phone)
    deposit_new_card(page, "25")
    with chromium(pw, tmp_path / "other") as other:
        intruder = other.pages[0]
        sign_up(intruder, base, "second@example.com", mobile="+13125550177")
        for path in ("statement", "deposit", "autoreload", "refund", "receipt?key=x"):
            response = intruder.goto(f"{base}/accounts/{account}/{path}")
            assert response is not None and response.status == 404, path
            expect(intruder.get_by_role("heading", name="Not found")).to_be_visible()
        response = intruder.goto(f"{base}/accounts/{account}/statement.csv")
        assert response is not None and response.status == 404
        assert "25.00" not in intruder.content()
        shot(other, "not-yours-320")
        # a form without the session's CSRF token changes nothing
        refused = intruder.request.post(f"{base}/cards", form={"card_number": "4111111111111111",
                                                               "card_expiry": "12/30", "card_cvv": "123",
                                                               "key": "forged-key-1"})
        assert refused.status == 403
        intruder.goto(f"{base}/cards")
        expect(intruder.get_by_text("No cards yet.")).to_be_visible()


def test_typed_dollars_become_integer_cents_and_bad_ones_are_refused() -> None:
    from web.pages.core import cents
    assert [cents(x) for x in ("25", "25.5", "$1,025.00", ".05", "0.10")] == [2500, 2550, 102_500, 5, 10]
    for bad in ("", "2.555", "1e3", "-5", "abc", "12345678"):
        with pytest.raises(ValueError):
            cents(bad)


def test_the_chart_steps_from_the_oldest_balance_to_today() -> None:
    from holders.history import Event
    from web.pages.chart import points, svg
    newest_first = [Event(3000, "a", "call", -150, ""), Event(2000, "a", "deposit", 1000, "")]
    assert points(newest_first, 850) == [(2000, 0), (2000, 1000), (3000, 850)]
    drawn = str(svg(points(newest_first, 850), "Balance <over> time"))
    assert "Balance &lt;over&gt; time" in drawn and "from $0.00 to $8.50, highest $10.00" in drawn


def test_request2call_ask_listed_cancel(base: str, phone: Phone, browser: BrowserContext) -> None:
    page = browser.pages[0]
    sign_up(page, base, "r2c@example.com")
    claim(page, phone)
    page.goto(f"{base}/home")
    page.get_by_role("link", name="Ask for a call").click()
    expect(page).to_have_url(f"{base}/request2call")
    expect(page.get_by_text("No requests yet.")).to_be_visible()
    page.get_by_label("Inmate number").fill("A 1")         # not an inmate number: the sentence under it
    page.get_by_role("button", name="Ask for a call").click()
    expect(page.locator("#inmate_id-error")).to_be_visible()
    expect(page.get_by_label("Inmate number")).to_have_attribute("aria-invalid", "true")
    page.get_by_label("Facility").select_option("FAC-07")
    page.get_by_label("Inmate number").fill("A-1001")
    page.get_by_label("Your number that receives the call").select_option(NUM)
    page.get_by_role("button", name="Ask for a call").click()
    expect(page.get_by_role("status")).to_have_text("Request sent.")
    item = page.locator("[data-testid=requests] li")
    expect(item).to_have_count(1)
    expect(item.get_by_test_id("status")).to_have_text("pending")
    expect(item).to_contain_text("A-1001")
    page.get_by_label("Inmate number").fill("A-1001")       # a second one for the same inmate: refused
    page.get_by_role("button", name="Ask for a call").click()
    expect(page.locator("#inmate_id-error")).to_contain_text("a request waiting for inmate A-1001")
    shot(browser, "request2call-320")
    page.get_by_role("button", name="Cancel the request for inmate A-1001").click()
    expect(page).to_have_url(f"{base}/request2call")
    expect(item.get_by_test_id("status")).to_have_text("cancelled")
    expect(page.get_by_role("button", name="Cancel the request for inmate A-1001")).to_have_count(0)
    page.goto(f"{base}/request2call?lang=es")
    expect(page.get_by_role("heading", name="Pedir una llamada")).to_be_visible()
    expect(item.get_by_test_id("status")).to_have_text("cancelada")
    shot(browser, "request2call-es-320")
