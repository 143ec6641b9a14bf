// An operator's day in the console, in headless Chromium (the system's, driven by playwright-core), against a
// real `dialer serve --role all` and the Twilio simulator started by ../main.rs, which passes:
//   CONSOLE_URL   http://127.0.0.1:PORT/console
//   API_KEY       a key with every scope;  READ_KEY  a key with campaigns:read only
//   CAMPAIGN_FILE the example delivery campaign (its zone set to one whose window is open now)
//   CSV_BAD       10 good rows and 2 bad ones (lines in BAD_LINES, e.g. "5,9");  CHROMIUM  the browser
//   SCREENSHOT_DIR  optional: where to save the README's screenshots
// Every step asserts on the page; the first failure exits non-zero with its message.
import { chromium } from "playwright-core";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const AXE = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
const env = (k) => { const v = process.env[k]; if (!v) throw new Error(`${k} is not set`); return v; };
const BASE = env("CONSOLE_URL"), KEY = env("API_KEY"), READ_KEY = env("READ_KEY");
const BAD_LINES = env("BAD_LINES").split(",");
const HANG = 180_000; // a hang guard, not a timing assertion

const SHOTS = process.env.SCREENSHOT_DIR;
async function shot(page, name) { if (SHOTS) await page.screenshot({ path: join(SHOTS, name), fullPage: true }); }

function assert(cond, msg) { if (!cond) throw new Error("assertion failed: " + msg); }
function step(name) { console.log("step:", name); }

/** No axe-core violation of impact serious or critical on the current page. */
async function axe(page, where) {
  await page.addScriptTag({ content: AXE }).catch(async () => {
    // The CSP forbids inline scripts; evaluate the library instead (Playwright's evaluate is not subject to it).
    await page.evaluate(AXE);
  });
  const res = await page.evaluate(async () => await window.axe.run(document, { resultTypes: ["violations"] }));
  const bad = res.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  assert(bad.length === 0, `${where}: axe violations ${JSON.stringify(bad.map((v) => [v.id, v.nodes.map((n) => n.target)]))}`);
}

async function login(page, key) {
  await page.goto(BASE + "/login");
  await page.getByLabel("API key").fill(key);
  await page.getByRole("button", { name: "Log in" }).click();
}

const browser = await chromium.launch({ executablePath: env("CHROMIUM"), args: ["--no-sandbox"] });
try {
  const ctx = await browser.newContext({ acceptDownloads: true, viewport: { width: 1280, height: 900 } });
  const page = await ctx.newPage();
  page.setDefaultTimeout(30_000);
  const xss = [];
  page.on("dialog", (d) => { xss.push(d.message()); d.dismiss(); });

  step("no key: every page is the login page, nothing else");
  for (const path of ["/campaigns", "/campaigns/1", "/dnc", "/campaigns/new"]) {
    await page.goto(BASE + path);
    assert(page.url().endsWith("/console/login"), `${path} redirected to the login page, got ${page.url()}`);
    assert(await page.locator("nav").count() === 0, "no navigation before login");
  }
  await axe(page, "login page");

  step("a wrong key: still the login page, with an error");
  await login(page, "dk_not-a-real-key");
  assert(page.url().endsWith("/console/login"), "still on the login page");
  assert((await page.locator("#key-error").textContent()).includes("unknown"), "says the key is unknown");
  assert(await page.locator("nav").count() === 0, "no navigation with a wrong key");

  step("log in with the keyboard alone");
  await page.goto(BASE + "/login");
  await page.keyboard.press("Tab");
  assert(await page.evaluate(() => document.activeElement.textContent) === "Skip to content", "the first Tab reaches the skip link");
  await page.keyboard.press("Tab");
  assert(await page.evaluate(() => document.activeElement.id) === "key", "then the key field");
  await page.keyboard.type(KEY);
  await page.keyboard.press("Enter");
  await page.waitForURL(/\/console\/campaigns$/);
  assert(page.url().endsWith("/console/campaigns"), "lands on the campaigns list: " + page.url());
  const cookies = await ctx.cookies();
  const sess = cookies.find((c) => c.name === "dialer_console");
  assert(sess && sess.httpOnly && sess.sameSite === "Strict" && sess.path === "/console", "session cookie is HttpOnly, SameSite=Strict, Path=/console: " + JSON.stringify(sess));
  assert(!(await page.content()).includes(KEY), "the key itself is not on the page");

  step("the campaign form: every wrong field is reported next to it at once");
  await page.goto(BASE + "/campaigns/new");
  await axe(page, "new campaign page");
  await page.getByLabel("Name", { exact: true }).fill("");
  await page.getByLabel("Caller ID (E.164, one of your Twilio numbers)").fill("+815012345678");
  await page.getByLabel("From (HH:MM)").fill("25:00");
  const script = await page.getByLabel(/^Script/).inputValue();
  await page.getByLabel(/^Script/).fill(script.replace('variables = ["name"]', "variables = []"));
  await page.getByRole("button", { name: "Create from the form" }).click();
  assert((await page.locator("#form-errors h2").textContent()) === "3 field(s) need attention", "three fields: " + await page.locator("#form-errors").textContent());
  assert((await page.locator("#name-error").textContent()).includes("must not be empty"), "name");
  assert((await page.locator("#window_start-error").textContent()).includes('"25:00" is not a time'), "window start");
  assert((await page.locator("#script-error").textContent()).includes("unknown variable `{name}`"), "script variable");
  for (const id of ["name", "window_start", "script"]) {
    assert(await page.locator("#" + id).getAttribute("aria-invalid") === "true", id + " is marked invalid");
  }
  assert(await page.getByLabel("From (HH:MM)").inputValue() === "25:00", "what was typed is kept");
  await axe(page, "new campaign form with errors");

  step("a campaign file with a bad field: the error is next to that field");
  await page.goto(BASE + "/campaigns/new");
  const file = readFileSync(env("CAMPAIGN_FILE"), "utf8");
  await page.getByLabel("Campaign file contents").fill(file.replace('start = "09:00"', 'start = "9am"'));
  await page.getByRole("button", { name: "Create campaign" }).click();
  const err = page.locator("#spec-error");
  assert((await err.textContent()).includes("window.start"), "the error names window.start: " + (await err.textContent()));
  assert(await page.locator("#spec").getAttribute("aria-invalid") === "true", "the field is marked invalid");
  await axe(page, "new campaign page with an error");

  step("an XSS attempt in a campaign name is shown as text");
  const evil = `<img src=x onerror="alert('name')"><script>alert('name2')</script>`;
  await page.getByLabel("Campaign file contents").fill(file.replace('name = "再配達のご案内"', `name = ${JSON.stringify(evil)}`));
  await page.getByRole("button", { name: "Create campaign" }).click();
  assert(/\/console\/campaigns\/\d+$/.test(page.url()), "created: " + page.url());
  assert((await page.locator("h1").textContent()) === evil, "the name is shown literally");
  assert(await page.locator("main img").count() === 0, "no injected image");

  step("create the delivery campaign from its file");
  await page.goto(BASE + "/campaigns/new");
  await page.getByLabel("Campaign file", { exact: true }).setInputFiles(env("CAMPAIGN_FILE"));
  await page.waitForFunction(() => document.getElementById("spec").value.includes("再配達"));
  assert((await page.getByLabel(/File name/).inputValue()).endsWith(".toml"), "the file name is filled in");
  await page.getByRole("button", { name: "Create campaign" }).click();
  assert((await page.locator("h1").textContent()) === "再配達のご案内", "the Japanese name renders");
  const campaignUrl = page.url();
  assert((await page.locator("#status").textContent()) === "draft", "a new campaign is a draft");
  await axe(page, "campaign page");

  step("a result webhook to a receiver that is down: the secret is shown once");
  await page.getByRole("link", { name: "Result webhook" }).click();
  await page.getByLabel(/^URL/).fill("http://127.0.0.1:9/hooks");
  await page.getByRole("button", { name: /^Save/ }).click();
  assert((await page.locator("#secret").inputValue()).startsWith("whsec_"), "the signing secret is shown");
  await axe(page, "webhook page");
  await page.goto(campaignUrl + "/webhook");
  assert(await page.locator("#secret").count() === 0 && !(await page.content()).includes("whsec_"), "and only once");
  await page.goto(campaignUrl);

  step("a CSV with two bad rows: exactly those rows are reported, nothing is added");
  await page.getByLabel("CSV file").setInputFiles(env("CSV_BAD"));
  await page.getByRole("button", { name: "Upload" }).click();
  await page.locator("#upload-result").waitFor();
  assert(await page.locator("#upload-result").getAttribute("data-ok") === "false", "refused as a whole");
  const lines = await page.locator("#row-errors tbody tr td:first-child").allTextContents();
  assert(JSON.stringify(lines) === JSON.stringify(BAD_LINES), `reported lines ${lines} are ${BAD_LINES}`);
  const cols = await page.locator("#row-errors tbody tr td:nth-child(2)").allTextContents();
  assert(JSON.stringify(cols) === JSON.stringify(["phone", "timezone"]), "columns named: " + cols);
  const reasons = await page.locator("#row-errors tbody tr td:nth-child(3)").allTextContents();
  assert(reasons.some((r) => r.includes("<b>")), "the XSS attempt in a bad cell is shown as text: " + reasons);
  assert(await page.locator("#row-errors b").count() === 0, "no markup from the CSV");
  assert(await page.locator("#upload-progress").evaluate((e) => e.value) === 100, "the upload's progress bar reached 100");
  assert((await page.locator("#contacts").textContent()) === "0", "nothing was added");
  await page.locator("#upload-report").scrollIntoViewIfNeeded();
  await shot(page, "console-upload-errors.png");

  step("start, pause and resume (no contacts yet, so it waits in running)");
  await page.getByRole("button", { name: "Start" }).click();
  assert((await page.locator("#status").textContent()) === "running", "running");
  await page.getByRole("button", { name: "Pause" }).click();
  assert((await page.locator("#status").textContent()) === "paused", "paused");
  await page.getByRole("button", { name: "Resume" }).click();
  assert((await page.locator("#status").textContent()) === "running", "running again");

  step("upload again skipping the bad rows; watch progress reach 100 % without reloading");
  await page.evaluate(() => { window.__sameDocument = true; });
  await page.getByLabel("CSV file").setInputFiles(env("CSV_BAD"));
  await page.getByLabel(/Skip invalid rows/).check();
  await page.getByRole("button", { name: "Upload" }).click();
  await page.locator("#upload-result[data-ok=true]").waitFor();
  const added = await page.locator("#upload-result").textContent();
  assert(added.includes("Added 10 contact(s)") && added.includes("2 invalid"), "added the 10 good rows: " + added);
  assert(await page.locator("#row-errors tbody tr").count() === 2, "the skipped rows are listed");
  // The rate is averaged over ten seconds, so it shows while the calls are made and a while after.
  await page.waitForFunction(() => parseFloat(document.getElementById("cps-now").textContent) > 0, null, { timeout: HANG });
  await page.waitForFunction(() => document.getElementById("progress").value === 100, null, { timeout: HANG });
  assert(await page.evaluate(() => window.__sameDocument === true), "the page was not reloaded");
  assert((await page.locator("#percent").textContent()) === "100 %", "shows 100 %");
  assert(Number(await page.locator("#contacts").textContent()) === 10, "10 contacts");
  await page.waitForFunction(() => document.querySelector("#results-chart text")?.textContent === "reschedule:afternoon", null, { timeout: HANG });
  const outcomeLabels = await page.locator("#outcomes-chart text:not(.n)").allTextContents();
  assert(outcomeLabels.length > 0 && !outcomeLabels.includes("none yet"), "the outcome chart has bars: " + outcomeLabels);
  assert(await page.locator("#outcomes-chart rect").count() === outcomeLabels.length, "one bar per outcome");
  await page.waitForFunction(() => document.querySelectorAll("#attempts tbody tr").length === 10, null, { timeout: HANG });
  const attempt = await page.locator("#attempts tbody tr").first().locator("td").allTextContents();
  assert(attempt[3].startsWith("CA") && attempt[4] === "completed" && attempt[5] === "answered_result" && attempt[6] === "reschedule:afternoon",
    "the latest attempt, live, with its Twilio status and outcome: " + attempt);
  assert(await page.evaluate(() => window.__sameDocument === true), "still not reloaded");
  await shot(page, "console-campaign.png");

  step("a contact: its attributes as text, and its attempts");
  await page.locator("#attempts tbody tr").first().getByRole("link").click();
  const attrs = await page.locator("#attributes td").allTextContents();
  assert(attrs.some((v) => /^<script>alert\('attr'\)<\/script>山田\d$/.test(v)), "the attribute is shown literally: " + attrs);
  assert(await page.locator("#contact-attempts tbody tr").count() === 1, "one attempt");
  const zone = await page.locator("#contact-zone").textContent();
  assert(zone.endsWith("(given at import)"), "the contact's zone and where it came from: " + zone);
  await axe(page, "contact page");
  assert(xss.length === 0, "no script ran from stored data: " + xss);

  step("the campaign page fits a phone");
  await page.setViewportSize({ width: 375, height: 800 });
  await page.goto(campaignUrl);
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  assert(width <= 375, "no sideways scrolling of the page at 375 px: " + width);
  await axe(page, "campaign page (phone)");
  await page.setViewportSize({ width: 1280, height: 900 });

  step("failing webhook deliveries are listed and can be replayed");
  await page.goto(campaignUrl + "/webhook");
  for (let i = 0; (await page.locator("#failing tbody tr").count()) === 0; i++) {
    assert(i < 120, "deliveries to a receiver that is down show up as failing");
    await page.waitForTimeout(1000); // polling a page that has no live updates
    await page.reload();
  }
  const failing = await page.locator("#failing tbody tr").first().locator("td").allTextContents();
  assert(failing[1].startsWith("contact.") && failing[4] !== "—", "event type and the receiver's error: " + failing);
  await page.locator("#failing tbody tr").first().getByRole("button", { name: /^Replay event/ }).click();
  assert((await page.locator("#webhook-notice").textContent()).includes("due again now"), "replayed");

  step("results: the table, a filter, and the CSV download");
  await page.goto(campaignUrl);
  await page.getByRole("link", { name: "Results", exact: true }).click();
  await axe(page, "results page");
  assert(await page.locator("#results tbody tr").count() === 10, "10 results");
  await page.getByLabel("Keypress result").selectOption("reschedule:afternoon");
  await page.getByRole("button", { name: "Filter" }).click();
  assert(await page.locator("#results tbody tr").count() === 10, "all 10 pressed 1 then 2");
  const [download] = await Promise.all([
    page.waitForEvent("download"),
    page.getByRole("link", { name: "Download all (CSV)" }).click(),
  ]);
  const csv = readFileSync(await download.path(), "utf8").trim().split("\n");
  assert(csv[0] === "contact_id,external_id,phone,state,outcome,result,attempts,last_call_at,zones,zone_source,inbound_calls,sms,operator,handle_s", "CSV header: " + csv[0]);
  assert(csv.length === 11, "10 rows: " + csv.length);
  for (const row of csv.slice(1)) {
    const f = row.split(",");
    assert(f[1].startsWith("P-") && f[3] === "done" && f[5] === "reschedule:afternoon", "row: " + row);
    assert(f[9] === "given", "the upload gave each row its zone: " + row);
  }

  step("the campaigns list at phone width");
  await page.setViewportSize({ width: 375, height: 800 });
  await page.goto(BASE + "/campaigns");
  const row = page.locator("#campaigns tr", { hasText: "再配達のご案内" });
  assert((await row.locator(".status").textContent()) === "completed", "completed in the list");
  assert(await row.locator("progress").evaluate((e) => e.value) === 100, "its bar is full");
  await axe(page, "campaigns list (phone)");
  await page.setViewportSize({ width: 1280, height: 900 });

  step("cancel asks first");
  const evilRow = page.locator("#campaigns tr", { hasText: "<img" });
  await evilRow.getByRole("link", { name: "Cancel…" }).click();
  await page.getByRole("button", { name: "Yes, cancel the campaign" }).click();
  assert((await page.locator("#status").textContent()) === "canceled", "canceled after confirming");

  step("API keys: create one (its secret shown once), see it listed by prefix, revoke it");
  await page.getByRole("link", { name: "API keys" }).click();
  await axe(page, "API keys page");
  await page.getByLabel(/^Name/).fill("crm export");
  await page.getByLabel("results:read").check();
  await page.getByRole("button", { name: "Create key" }).click();
  const secret = await page.locator("#secret").inputValue();
  assert(secret.startsWith("dk_"), "the new key is shown");
  const keyRow = page.locator("#keys tr", { hasText: "crm export" });
  assert((await keyRow.locator("td").nth(1).textContent()) === secret.slice(0, 11) + "…", "listed by its prefix");
  await page.goto(BASE + "/keys");
  assert(!(await page.content()).includes(secret), "the secret is not shown again");
  await page.locator("#keys tr", { hasText: "crm export" }).getByRole("button", { name: "Revoke crm export" }).click();
  assert((await page.locator("#keys tr", { hasText: "crm export" }).locator(".status").textContent()) === "revoked", "revoked");

  step("add a DNC number, find it, remove it");
  await page.getByRole("link", { name: "Do-not-call" }).click();
  await axe(page, "DNC page");
  await page.getByLabel("Phone number", { exact: true }).fill("+818011112222");
  await page.getByLabel("Reason").fill("asked on the phone <b>x</b>");
  await page.getByRole("button", { name: "Add to the list" }).click();
  assert((await page.locator("#dnc-status p").textContent()).includes("+818011112222 is on the global"), "listed");
  assert((await page.locator("#dnc-status td").nth(1).textContent()) === "asked on the phone <b>x</b>", "reason as text");
  await page.getByLabel(/Phone number \(E\.164/).fill("+818011112222");
  await page.getByRole("button", { name: "Search" }).click();
  assert((await page.locator("#dnc-status p").textContent()).includes("is on the global"), "found by search");
  await page.getByRole("button", { name: "Remove" }).click();
  assert((await page.locator("#dnc-status p").first().textContent()).includes("is not on any"), "removed");

  step("a form posted without its CSRF token is refused");
  const id = campaignUrl.split("/").pop();
  const refused = await page.evaluate(async (url) => {
    const r = await fetch(url, { method: "POST", headers: { "Content-Type": "application/x-www-form-urlencoded" }, body: "" });
    return r.status;
  }, `${BASE}/campaigns/${id}/pause`);
  assert(refused === 403, "no token: 403, got " + refused);
  const wrong = await page.evaluate(async (url) => {
    const r = await fetch(url, { method: "POST", headers: { "Content-Type": "application/x-www-form-urlencoded" }, body: "phone=%2B818099990000&csrf=forged" });
    return r.status;
  }, `${BASE}/dnc`);
  assert(wrong === 403, "a forged token: 403, got " + wrong);

  step("a key without a scope cannot act; log out ends the session");
  await page.getByRole("button", { name: "Log out" }).click();
  assert(page.url().endsWith("/console/login"), "logged out");
  await page.goto(BASE + "/campaigns");
  assert(page.url().endsWith("/console/login"), "the old session is gone");
  await login(page, READ_KEY);
  assert(page.url().endsWith("/console/campaigns"), "a read-only key may look");
  await page.goto(BASE + "/dnc");
  assert(await page.locator("h1").textContent() === "Not allowed", "but not at the DNC list");
  console.log("ok: the operator's day passed");
} finally {
  await browser.close();
}
