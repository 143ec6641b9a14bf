// The operator page (/console/operator) in headless Chromium (the system's, driven by playwright-core), against
// a real `dialer serve --role all` started by ../main.rs with TWILIO_API_KEY_SID/SECRET set, which passes:
//   CONSOLE_URL    http://127.0.0.1:PORT/console
//   OPERATOR_KEY   the API key of operator "alice";  PLAIN_KEY  an API key that is no operator's
//   IDENTITY       alice's identity ("alice")
//   ACCOUNT_SID    TWILIO_ACCOUNT_SID of the server;  API_KEY_SID / API_KEY_SECRET  the signing key (SK…)
//   TOKEN_TTL      OPERATOR_TOKEN_TTL_SECONDS of the server;  CHROMIUM  the browser
// The Voice SDK cannot reach Twilio from here: its device ends in an error, which the page only shows in
// #device-state. Every step asserts on the page; the first failure exits non-zero with its message.
import { chromium } from "playwright-core";
import { readFileSync } from "node:fs";
import { createHmac } from "node:crypto";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const AXE = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
const env = (k) => { const v = process.env[k]; if (!v) throw new Error(`${k} is not set`); return v; };
const BASE = env("CONSOLE_URL"), KEY = env("OPERATOR_KEY"), PLAIN_KEY = env("PLAIN_KEY");
const IDENTITY = env("IDENTITY"), ACCOUNT_SID = env("ACCOUNT_SID");
const API_KEY_SID = env("API_KEY_SID"), API_KEY_SECRET = env("API_KEY_SECRET");
const TTL = Number(env("TOKEN_TTL"));
const ORIGIN = new URL(BASE).origin;

function assert(cond, msg) { if (!cond) throw new Error("assertion failed: " + msg); }
function step(name) { console.log("step:", name); }

/** No axe-core violation of impact serious or critical on the current page. */
async function axe(page, where) {
  // The CSP forbids inline scripts (a script tag would only log a refusal): evaluate the library instead,
  // which Playwright's evaluate is allowed to.
  if (!(await page.evaluate(() => !!window.axe))) await page.evaluate(AXE);
  const res = await page.evaluate(async () => await window.axe.run(document, { resultTypes: ["violations"] }));
  const bad = res.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  assert(bad.length === 0, `${where}: axe violations ${JSON.stringify(bad.map((v) => [v.id, v.nodes.map((n) => n.target)]))}`);
}

async function login(page, key) {
  await page.goto(BASE + "/login");
  await page.getByLabel("API key").fill(key);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.waitForURL(/\/console\/campaigns$/);
}

const b64json = (part) => JSON.parse(Buffer.from(part, "base64url").toString("utf8"));

/** A POST from the page's own origin (with the session cookie), as operator.js makes it; its status and body. */
async function postFromPage(page, url, headers) {
  return await page.evaluate(async ([url, headers]) => {
    const r = await fetch(url, { method: "POST", headers, credentials: "same-origin" });
    return { status: r.status, type: r.headers.get("content-type") || "", body: await r.text() };
  }, [url, headers]);
}

/** The page shows the token was fetched, and the device's attempt to register has failed: Twilio is out of
 *  reach here (and would refuse a token signed with a made-up key anyway). The SDK keeps retrying. */
async function pageReady(page) {
  await page.locator("body[data-token=ok]").waitFor();
  await page.waitForFunction(() => /^error: \S/.test(document.getElementById("device-state").textContent));
}

const browser = await chromium.launch({
  executablePath: env("CHROMIUM"),
  // No microphone prompt or device here; the SDK only needs them to take a call.
  args: ["--no-sandbox", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"],
});
try {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await ctx.newPage();
  page.setDefaultTimeout(30_000);
  // Uncaught exceptions (and unhandled rejections) in the page fail the test, whoever threw them.
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(String(e && e.stack ? e.stack : e)));
  // Console errors: the SDK's failed attempts to reach Twilio are expected; a CSP refusal or anything
  // mentioning our own assets is not.
  const consoleErrors = [];
  page.on("console", (m) => { if (m.type() === "error") consoleErrors.push({ text: m.text(), url: m.location().url || "" }); });
  const ownConsoleErrors = () => consoleErrors.filter((e) => {
    if (e.url.endsWith("/favicon.ico")) return false; // the browser asks by itself; the console has none
    if (/Content Security Policy/i.test(e.text)) return true;
    if (e.url.includes("/console/assets/operator.js") || e.url.includes("/console/assets/console.js")) return true;
    if (e.url.startsWith(ORIGIN) && !e.url.includes("twilio-voice.min.js")) {
      // A failed load of one of our own resources (the page, an asset): not the SDK's network.
      return !/twilio\.com|WebSocket|ERR_NAME_NOT_RESOLVED|ERR_INTERNET_DISCONNECTED|net::/i.test(e.text);
    }
    return false;
  });

  step("log in as operator alice and open the operator page; the token is fetched with the CSRF header");
  await login(page, KEY);
  const tokenResponse = page.waitForResponse((r) => r.url() === `${BASE}/operator/token` && r.request().method() === "POST");
  const nav = await page.goto(BASE + "/operator");
  assert(nav.status() === 200, "the operator page: 200, got " + nav.status());
  const csp = nav.headers()["content-security-policy"] || "";
  assert(/connect-src [^;]*wss:\/\/\*\.twilio\.com/.test(csp) && /script-src 'self';/.test(csp),
    "the page's CSP lets the SDK reach Twilio and still only runs our scripts: " + csp);
  const tokenRes = await tokenResponse;
  assert(tokenRes.status() === 200, "token: 200, got " + tokenRes.status());
  const req = tokenRes.request();
  const csrf = await page.locator("#operator").getAttribute("data-csrf");
  assert(csrf && (await req.headerValue("x-csrf-token")) === csrf, "the token POST carries the page's CSRF token");
  assert((tokenRes.headers()["content-type"] || "").startsWith("application/json"), "token answer is JSON");
  const t = await tokenRes.json();
  await pageReady(page);

  step("the access token: Twilio's header and claims, signed with the API key secret");
  assert(t.identity === IDENTITY && t.ttl_secs === TTL, "identity and ttl_secs: " + JSON.stringify({ ...t, token: "…" }));
  const parts = t.token.split(".");
  assert(parts.length === 3, "a JWT has three parts");
  assert(Buffer.from(parts[0], "base64url").toString("utf8") === '{"alg":"HS256","cty":"twilio-fpa;v=1","typ":"JWT"}',
    "header: " + Buffer.from(parts[0], "base64url").toString("utf8"));
  const claims = b64json(parts[1]);
  assert(claims.grants && claims.grants.identity === IDENTITY, "grants.identity: " + JSON.stringify(claims.grants));
  assert(claims.grants.voice && claims.grants.voice.incoming && claims.grants.voice.incoming.allow === true,
    "grants.voice.incoming.allow: " + JSON.stringify(claims.grants.voice));
  assert(claims.iss === API_KEY_SID, "iss is the API key SID: " + claims.iss);
  assert(claims.sub === ACCOUNT_SID, "sub is the account SID: " + claims.sub);
  assert(claims.exp - claims.nbf === TTL, `exp - nbf is the TTL: ${claims.exp} - ${claims.nbf}`);
  const now = Date.now() / 1000;
  assert(Math.abs(claims.nbf - now) < 120, `nbf is about now: ${claims.nbf} vs ${now}`);
  assert(typeof claims.jti === "string" && claims.jti.startsWith(API_KEY_SID + "-"), "jti: " + claims.jti);
  assert(Math.abs(Date.parse(t.expires_at) / 1000 - claims.exp) < 1, `expires_at ${t.expires_at} is exp ${claims.exp}`);
  const sig = createHmac("sha256", API_KEY_SECRET).update(parts[0] + "." + parts[1]).digest("base64url");
  assert(sig === parts[2], "signed with HMAC-SHA256 of the API key secret");
  // The page's view of it: the answer's identity, and the token itself is not put into the page.
  assert(await page.evaluate(() => document.body.dataset.identity) === IDENTITY, "body[data-identity]");
  assert(!(await page.content()).includes(t.token), "the token is not written into the page");

  step("the page: identity, availability, the device's state (an error, as Twilio is out of reach)");
  assert((await page.locator("#identity").textContent()) === IDENTITY, "#identity is alice");
  assert((await page.locator("#availability").textContent()) === "away", "a new operator is away: " + await page.locator("#availability").textContent());
  const device = (await page.locator("#device-state").textContent()).trim();
  assert(device.length > "error: ".length, "#device-state says what went wrong");
  console.log("device-state:", device);
  assert((await page.locator("#operator-error").textContent()) === "", "the device's error is not the page's: " + await page.locator("#operator-error").textContent());
  for (const id of ["answer", "reject", "hang-up"]) {
    assert(await page.locator("#" + id).isDisabled(), `#${id} is disabled without a call`);
  }
  assert((await page.locator("#team tbody tr", { hasText: IDENTITY }).locator("td").nth(1).textContent()) === "away", "the team table lists alice, away");
  await axe(page, "operator page");

  step("available, then away: the buttons post the status and show the answer");
  const [statusRes] = await Promise.all([
    page.waitForResponse((r) => r.url() === `${BASE}/operator/status`),
    page.locator("#go-available").click(),
  ]);
  assert(statusRes.status() === 200, "status: 200, got " + statusRes.status());
  assert((await statusRes.request().headerValue("x-csrf-token")) === csrf, "the status POST carries the CSRF token");
  await page.waitForFunction(() => document.getElementById("availability").textContent === "available");
  assert((await page.locator("#operator-error").textContent()) === "", "no error after going available");
  // What the database holds, as the team table shows after a reload.
  await page.reload();
  await pageReady(page);
  assert((await page.locator("#availability").textContent()) === "available", "still available after a reload");
  assert((await page.locator("#team tbody tr", { hasText: IDENTITY }).locator("td").nth(1).textContent()) === "available", "the team table says available");
  await page.locator("#go-away").focus(); // with the keyboard this time
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => document.getElementById("availability").textContent === "away");
  assert((await page.locator("#operator-error").textContent()) === "", "no error after going away");
  await axe(page, "operator page after the status changes");

  step("nothing of the page's own failed");
  assert(pageErrors.length === 0, "uncaught exceptions in the page: " + JSON.stringify(pageErrors));
  const own = ownConsoleErrors();
  assert(own.length === 0, "console errors from the page or a CSP refusal: " + JSON.stringify(own));
  console.log(`(${consoleErrors.length} console error(s) from the SDK's network attempts ignored)`);

  step("the token endpoint refuses a POST without the CSRF header, or with a forged one");
  const noHeader = await postFromPage(page, `${BASE}/operator/token`, {});
  assert(noHeader.status === 403 && !noHeader.body.includes('"token"'), "no CSRF header: 403, got " + noHeader.status + " " + noHeader.body);
  const forged = await postFromPage(page, `${BASE}/operator/token`, { "X-CSRF-Token": "forged" });
  assert(forged.status === 403 && !forged.body.includes('"token"'), "a forged CSRF header: 403, got " + forged.status);
  const statusNoHeader = await page.evaluate(async (url) => (await fetch(url, { method: "POST", body: new URLSearchParams({ status: "available" }) })).status, `${BASE}/operator/status`);
  assert(statusNoHeader === 403, "the status endpoint too: 403, got " + statusNoHeader);
  assert((await page.locator("#availability").textContent()) === "away", "and the status did not change");
  const busy = await page.evaluate(async ([url, csrf]) => {
    const r = await fetch(url, { method: "POST", headers: { "X-CSRF-Token": csrf }, body: new URLSearchParams({ status: "busy" }) });
    return { status: r.status, body: await r.text() };
  }, [`${BASE}/operator/status`, csrf]);
  assert(busy.status >= 400 && busy.status < 500 && busy.body.includes("available"), "an operator cannot set herself busy: " + busy.status + " " + busy.body);

  step("a key that is no operator's: the page and the token are refused");
  await page.getByRole("button", { name: "Log out" }).click();
  await page.waitForURL(/\/console\/login$/);
  await login(page, PLAIN_KEY);
  const plainCsrf = await page.locator("form.logout input[name=csrf]").inputValue();
  assert(plainCsrf.length > 0, "the session's CSRF token, from the log-out form");
  const refused = await page.goto(BASE + "/operator");
  assert(refused.status() === 403, "the operator page: 403, got " + refused.status());
  assert((await page.locator("h1").textContent()) === "Not allowed", "the Not allowed page");
  assert((await page.locator("main [role=alert]").textContent()).includes("not an operator"), "it says why");
  assert(await page.locator("#operator").count() === 0, "no operator widget");
  await page.waitForTimeout(300);
  assert(await page.evaluate(() => document.body.dataset.token) === undefined, "no token was fetched");
  await axe(page, "operator page refused");
  const plainToken = await postFromPage(page, `${BASE}/operator/token`, { "X-CSRF-Token": plainCsrf });
  assert(plainToken.status === 403 && !plainToken.body.includes('"token"'), "token for a non-operator: 403, got " + plainToken.status + " " + plainToken.body);
  const plainStatus = await page.evaluate(async ([url, csrf]) => (await fetch(url, { method: "POST", headers: { "X-CSRF-Token": csrf }, body: new URLSearchParams({ status: "available" }) })).status, [`${BASE}/operator/status`, plainCsrf]);
  assert(plainStatus === 403, "status for a non-operator: 403, got " + plainStatus);
  assert(pageErrors.length === 0, "uncaught exceptions in the page: " + JSON.stringify(pageErrors));
  console.log("ok: the operator page passed");
} finally {
  await browser.close();
}
