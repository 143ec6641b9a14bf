// The operator page's script (after twilio-voice.min.js, Twilio's official Voice SDK): fetch an Access Token,
// register a Twilio.Device to take transferred calls in the browser, and set the operator's availability.
// Plain ES2017, no build step. Everything from the server or Twilio is shown with textContent. A device that
// cannot reach Twilio only says so in #device-state: the availability buttons work without it.
"use strict";

(function () {
  const root = document.getElementById("operator");
  if (!root) return;
  const csrf = root.dataset.csrf || "";
  const $ = (id) => document.getElementById(id);
  const say = (id, text) => { const el = $(id); if (el) el.textContent = text; };
  const enable = (id, on) => { const el = $(id); if (el) el.disabled = !on; };
  const fail = (text) => say("operator-error", text);
  // The SDK's errors name their code in the message: "ConnectionError (31005): A connection error…".
  const errText = (e) => (e && e.message ? e.message : String(e));

  async function post(url, body) {
    const res = await fetch(url, {
      method: "POST",
      headers: { "X-CSRF-Token": csrf },
      credentials: "same-origin",
      body: body,
    });
    if (!res.ok) throw new Error(url + ": HTTP " + res.status);
    return res.json();
  }

  async function fetchToken() {
    const t = await post(root.dataset.tokenUrl);
    if (typeof t.token !== "string" || !t.token) throw new Error("the token answer has no token");
    document.body.dataset.token = "ok";
    document.body.dataset.identity = t.identity;
    say("identity", t.identity);
    return t;
  }

  // --- Availability: independent of the device. ---
  async function setStatus(status) {
    try {
      const s = await post(root.dataset.statusUrl, new URLSearchParams({ status: status }));
      say("availability", s.status);
      fail("");
    } catch (e) {
      fail("Could not set availability: " + errText(e));
    }
  }
  const onClick = (id, f) => { const el = $(id); if (el) el.addEventListener("click", f); };
  onClick("go-available", () => setStatus("available"));
  onClick("go-away", () => setStatus("away"));

  // --- Calls. ---
  let call = null; // the incoming or current call

  function showCall(state) {
    // state: "ringing" | "connected" | null (no call)
    enable("answer", state === "ringing");
    enable("reject", state === "ringing");
    enable("hang-up", state === "connected");
  }

  function track(c) {
    call = c;
    const p = c.parameters || {};
    say("incoming", "Incoming call from " + (p.From || "unknown caller"));
    showCall("ringing");
    c.on("accept", () => { say("incoming", "In call with " + (p.From || "caller")); showCall("connected"); });
    const over = (why) => () => { if (call === c) { call = null; showCall(null); say("incoming", why); } };
    c.on("disconnect", over("Call ended"));
    c.on("cancel", over("The caller hung up"));
    c.on("reject", over("Call rejected"));
    c.on("error", (e) => fail("Call error: " + errText(e)));
  }

  onClick("answer", () => { if (call) call.accept(); });
  onClick("reject", () => { if (call) call.reject(); });
  onClick("hang-up", () => { if (call) call.disconnect(); });
  showCall(null);

  // --- Device. ---
  async function startDevice() {
    if (typeof Twilio === "undefined" || !Twilio.Device) {
      say("device-state", "error: the Voice SDK did not load");
      return;
    }
    say("device-state", "fetching token");
    let t;
    try {
      t = await fetchToken();
    } catch (e) {
      say("device-state", "error: no token");
      fail("Could not get a voice token: " + errText(e));
      return;
    }
    const device = new Twilio.Device(t.token, {
      logLevel: "warn",
      codecPreferences: ["opus", "pcmu"],
      closeProtection: true,
    });
    device.on("registering", () => say("device-state", "registering"));
    device.on("registered", () => say("device-state", "registered"));
    device.on("unregistered", () => say("device-state", "unregistered"));
    device.on("error", (e) => say("device-state", "error: " + errText(e)));
    device.on("incoming", track);
    device.on("tokenWillExpire", async () => {
      try {
        device.updateToken((await fetchToken()).token);
      } catch (e) {
        fail("Could not renew the voice token: " + errText(e));
      }
    });
    try {
      await device.register();
    } catch (e) {
      say("device-state", "error: " + errText(e));
    }
  }

  startDevice();
})();
