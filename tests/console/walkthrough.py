"""The console in a real browser: Debian's Chromium driven by Playwright.

Run by `tests/it/console.rs`, which starts forewarn with a sandbox gateway and a directory of
customers, and passes in the environment:

  CONSOLE_URL     forewarn's base URL (http://127.0.0.1:PORT)
  CONSOLE_TOKEN   the console's sign-in token
  SHOTS           the folder screenshots go to (under target/)
  REGION          the region to announce an incident in
  CUSTOMER        one customer of that region, to look up afterwards
  CHROMIUM        the browser (default /usr/bin/chromium)

It does what a person would, waits for what the page shows (never for a fixed time), takes a
screenshot of every page, and prints what it read as one JSON object on its last line; the
Rust test checks those readings against forewarn's own. Any step that fails raises, and the
script exits non-zero with Playwright's message.
"""

import json
import os
import sys

from playwright.sync_api import expect, sync_playwright

BASE = os.environ["CONSOLE_URL"]
TOKEN = os.environ["CONSOLE_TOKEN"]
SHOTS = os.environ["SHOTS"]
REGION = os.environ["REGION"]
CUSTOMER = os.environ["CUSTOMER"]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# Chromium's own calls home are refused on a closed network; these keep it quiet.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Long enough for a fan-out on a slow machine; each wait ends as soon as its condition holds.
PATIENCE_MS = 60_000

readings = {}


def shot(page, name):
    page.screenshot(path=os.path.join(SHOTS, f"{name}.png"), full_page=True)


def main():
    os.makedirs(SHOTS, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        # A phone-sized window: the pages must read well there.
        context = browser.new_context(locale="en-US", viewport={"width": 420, "height": 900})
        context.set_default_timeout(PATIENCE_MS)
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))

        # Signing in: a page asked for without a session goes to the sign-in form and back.
        page.goto(f"{BASE}/console/today")
        expect(page).to_have_url(f"{BASE}/console/signin?next=%2Fconsole%2Ftoday")
        shot(page, "01-signin")
        page.get_by_label("Your name").fill("Dana (on call)")
        page.get_by_label("Console token").fill(TOKEN)
        page.keyboard.press("Enter")
        expect(page).to_have_url(f"{BASE}/console/today")
        expect(page.locator("header")).to_contain_text("Dana (on call)")
        shot(page, "02-today")

        # A Korean SMS, as sent, with its segment count.
        page.get_by_role("link", name="Rules & templates").click()
        expect(page.get_by_role("heading", name="Rules & templates", level=1)).to_be_visible()
        shot(page, "03-rules")
        page.goto(f"{BASE}/console/templates/delay-apology?locale=ko&file=sms.ko.hbs")
        sms = page.locator('[data-channel="sms"][data-locale="ko"]')
        expect(sms.locator("[data-sms]")).not_to_be_empty()
        readings["example"] = page.get_by_label("Example event").input_value()
        readings["ko_sms_text"] = sms.locator("[data-sms]").inner_text()
        readings["ko_sms_segments"] = int(sms.locator("[data-segments]").inner_text())
        readings["ko_sms_encoding"] = sms.locator(".meta").inner_text()
        # The e-mail's HTML, rendered in its sandboxed frame.
        mail = page.frame_locator('[data-channel="email"][data-locale="ko"] iframe')
        expect(mail.locator("p").first).to_be_visible()
        readings["ko_email_html_text"] = mail.locator("body").inner_text()
        card = page.locator('[data-channel="email"][data-locale="ko"]')
        card.scroll_into_view_if_needed()
        card.screenshot(path=os.path.join(SHOTS, "04b-template-ko-email.png"))
        shot(page, "04-template-ko")

        # Typing into the template: the preview follows, with no reload and no click.
        editor = page.get_by_label("Text of")
        editor.focus()
        page.keyboard.press("Control+End")
        # Long enough to take the message past a segment boundary (67 UCS-2 characters each).
        added = (" 오늘 주문하신 상품의 대체 상품도 가까운 매장에서 바로 받으실 수 있습니다."
                 " 불편을 드려 다시 한번 진심으로 사과드리며 더 나은 서비스로 보답하겠습니다.")
        page.keyboard.type(added)
        expect(sms.locator("[data-sms]")).to_contain_text(added.strip())
        readings["typed_sms_text"] = sms.locator("[data-sms]").inner_text()
        readings["typed_sms_segments"] = int(sms.locator("[data-segments]").inner_text())
        # A mistake shows where it is; the preview shows the file as saved meanwhile.
        page.keyboard.type(" {{#if}}")
        expect(page.locator("[data-draft-error]")).to_contain_text("sms.ko.hbs:")
        readings["draft_error"] = page.locator("[data-draft-error]").inner_text()
        shot(page, "05-template-typed")

        # Announcing an incident to a region: the dry run's count, then confirm.
        page.get_by_role("link", name="Incidents").click()
        page.get_by_label("Title", exact=True).fill("Card payments failing")
        page.get_by_label("Services down").fill("payments, checkout")
        page.get_by_label("Regions").fill(REGION)
        page.get_by_label("Severity").select_option("major")
        page.get_by_label("Message to customers", exact=True).fill(
            "Card payments are failing; your orders are safe and we will retry them.")
        page.get_by_label("Expected fix").fill("2h")
        shot(page, "06-incidents")
        page.get_by_role("button", name="Check who will be told").click()
        count = page.locator("[data-dry-run-count]")
        expect(count).to_be_visible()
        readings["dry_run_count"] = int(count.inner_text())
        readings["dry_run_first_message"] = page.locator("[data-first-message]").inner_text()
        shot(page, "07-dry-run")
        page.get_by_role("button", name="Confirm and announce").click()
        progress = page.locator("#progress")
        expect(progress).to_have_attribute("data-done", "true")
        readings["incident_url"] = page.url
        readings["progress"] = {
            name: int(progress.locator(f'[data-count="{name}"]').inner_text())
            for name in ["decided", "queued", "sent", "failed", "deferred", "cancelled"]
        }
        readings["phase"] = progress.locator('[data-field="phase"]').inner_text()
        shot(page, "08-incident-done")

        # One of those customers, and the message in their timeline.
        page.get_by_role("link", name="Customers").click()
        page.get_by_label("Customer id").fill(CUSTOMER)
        page.get_by_role("button", name="Find").click()
        message = page.locator('[data-message][data-rule="outage-started-notice"]')
        expect(message).to_be_visible()
        readings["timeline_message"] = message.inner_text()
        readings["masked_phone"] = page.locator("[data-phone]").inner_text()
        shot(page, "09-customer")
        page.get_by_role("button", name="Reveal contact details").click()
        readings["revealed_phone"] = page.locator("[data-phone]").inner_text()

        # CX replays the last day through the rules on disk — the incident's fan-out included —
        # in the background; the page follows it and shows the report when it is done.
        page.get_by_role("link", name="Rules & templates").click()
        page.get_by_label("Replay the stored events of").select_option("1d")
        page.get_by_role("button", name="Simulate the files on disk").click()
        expect(page).to_have_url(f"{BASE}/console/simulations/1")
        report = page.locator("[data-simulated-events]")
        expect(report).to_be_visible()
        readings["simulated_events"] = int(report.get_attribute("data-simulated-events"))
        row = page.locator('[data-row="outage-started-notice/sms"] td.num').first
        readings["simulated_outage_sms"] = int(row.inner_text())
        readings["simulated_differences"] = {
            kind: int(page.locator(f'[data-difference="{kind}"]').inner_text())
            for kind in ["new", "dropped", "changed_channel", "changed_offer"]
        }
        shot(page, "09b-simulation")

        # The same console in Korean.
        page.get_by_role("link", name="한국어").click()
        expect(page.locator("html")).to_have_attribute("lang", "ko")
        page.get_by_role("link", name="오늘").click()
        expect(page.get_by_role("heading", name="오늘", level=1)).to_be_visible()
        shot(page, "10-today-ko")
        readings["today_ko"] = page.locator("main").inner_text()

        readings["script_errors"] = errors
        browser.close()


if __name__ == "__main__":
    try:
        main()
    finally:
        print(json.dumps(readings, ensure_ascii=False))
    sys.exit(0)
