// The node's browser page: sign in with a token, pick a camera, see a day of its footage
// (recorded, gaps, holds), play a range and download it as MP4. Everything goes through the
// same /api/v1 a script uses; the session is an HttpOnly cookie holding the token.
"use strict";

const $ = (id) => document.getElementById(id);
const DAY_MS = 86400000;
// The timeline shows [viewStart, viewStart + viewMs): a day, or a closer window of it.
const state = { camera: null, viewStart: null, viewMs: DAY_MS, cameras: [] };
const WINDOWS = [DAY_MS, 10800000, 3600000, 600000];

async function api(path, opts = {}) {
  const init = { credentials: "same-origin", ...opts };
  if (opts.body !== undefined) {
    init.headers = { "Content-Type": "application/json" };
    init.body = JSON.stringify(opts.body);
  }
  const r = await fetch(path, init);
  const doc = await r.json().catch(() => ({}));
  if (!r.ok) {
    const e = new Error((doc.error && doc.error.message) || `HTTP ${r.status}`);
    e.status = r.status;
    throw e;
  }
  return doc;
}

// ISO 8601 in the browser's zone, with its offset: what the API and the CLI take.
function isoLocal(ms) {
  const d = new Date(ms);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  const off = -d.getTimezoneOffset();
  const sign = off >= 0 ? "+" : "-";
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:` +
    `${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}` +
    `${sign}${pad(Math.floor(Math.abs(off) / 60))}:${pad(Math.abs(off) % 60)}`;
}

function localDayStart(ms) {
  const d = new Date(ms);
  d.setHours(0, 0, 0, 0);
  return d.getTime();
}

function dayInputValue(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
}

function showError(id, e) { $(id).textContent = e ? e.message || String(e) : ""; }

async function start() {
  $("tz").textContent = `times in ${Intl.DateTimeFormat().resolvedOptions().timeZone}`;
  try {
    const me = await api("/api/v1/session");
    signedIn(me);
  } catch (e) {
    $("signin").hidden = false;
  }
}

function signedIn(me) {
  state.mayExport = (me.may || []).includes("export");
  $("who").textContent = `${me.name} (${me.role}; ${me.groups.join(", ")})`;
  $("signin").hidden = true;
  $("signout").hidden = false;
  $("app").hidden = false;
  loadCameras().catch((e) => showError("error", e));
}

$("signin-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  showError("signin-error", null);
  try {
    signedIn(await api("/api/v1/session", { method: "POST", body: { token: $("token").value.trim() } }));
    $("token").value = "";
  } catch (e) {
    showError("signin-error", e);
  }
});

$("signout").addEventListener("click", async () => {
  await api("/api/v1/session", { method: "DELETE" }).catch(() => {});
  location.reload();
});

async function loadCameras() {
  const doc = await api("/api/v1/cameras");
  state.cameras = doc.cameras;
  const ul = $("cameras");
  ul.replaceChildren();
  for (const c of doc.cameras) {
    const li = document.createElement("li");
    li.dataset.camera = c.camera;
    li.textContent = c.camera;
    if (c.recording) {
      const rec = document.createElement("span");
      rec.className = "rec";
      rec.textContent = "● rec";
      li.append(rec);
    }
    li.addEventListener("click", () => pickCamera(c));
    ul.append(li);
  }
  if (!doc.cameras.length) ul.textContent = "no cameras in your groups";
}

function pickCamera(c) {
  state.camera = c.camera;
  for (const li of $("cameras").children) li.classList.toggle("selected", li.dataset.camera === c.camera);
  $("camera-title").textContent = c.camera;
  $("live").hidden = !c.recording;
  const last = c.last_ns ? c.last_ns / 1e6 : Date.now();
  const first = c.first_ns ? Math.max(c.first_ns / 1e6, localDayStart(last)) : last;
  // The closest window that shows the day's footage whole.
  state.viewMs = WINDOWS.filter((w) => w >= (last - first) * 1.1).pop() || DAY_MS;
  state.viewStart = state.viewMs === DAY_MS ? localDayStart(last)
    : Math.max(localDayStart(last), first - (state.viewMs - (last - first)) / 2);
  $("window").value = String(state.viewMs);
  $("day").value = dayInputValue(last);
  // Start on the last ten minutes of its footage.
  setRange(Math.max(first, last - 600000), last);
  loadTimeline().catch((e) => showError("error", e));
}

$("day").addEventListener("change", () => {
  if (!$("day").value) return;
  const [y, m, d] = $("day").value.split("-").map(Number);
  state.viewMs = DAY_MS;
  $("window").value = String(DAY_MS);
  state.viewStart = new Date(y, m - 1, d).getTime();
  loadTimeline().catch((e) => showError("error", e));
});

$("window").addEventListener("change", () => {
  const ms = Number($("window").value);
  const anchor = Date.parse($("from").value) || state.viewStart + state.viewMs / 2;
  state.viewMs = ms;
  state.viewStart = ms === DAY_MS ? localDayStart(anchor) : anchor - ms / 4;
  loadTimeline().catch((e) => showError("error", e));
});

for (const [id, dir] of [["earlier", -1], ["later", 1]]) {
  $(id).addEventListener("click", () => {
    if (state.viewStart === null) return;
    state.viewStart += dir * state.viewMs;
    $("day").value = dayInputValue(state.viewStart);
    loadTimeline().catch((e) => showError("error", e));
  });
}

async function loadTimeline() {
  if (!state.camera) return;
  showError("error", null);
  const from = encodeURIComponent(isoLocal(state.viewStart));
  const to = encodeURIComponent(isoLocal(state.viewStart + state.viewMs));
  const spans = $("spans");
  spans.replaceChildren();
  let tl;
  try {
    tl = await api(`/api/v1/cameras/${encodeURIComponent(state.camera)}/timeline?from=${from}&to=${to}`);
  } catch (e) {
    if (e.status === 404) { $("status").textContent = "no footage in this window"; return; }
    throw e;
  }
  const put = (cls, a, b, title) => {
    const left = ((a - state.viewStart) / state.viewMs) * 100;
    const width = Math.max(((b - a) / state.viewMs) * 100, 0.05);
    const el = document.createElement("div");
    el.className = cls;
    el.style.left = `${left}%`;
    el.style.width = `${width}%`;
    el.dataset.from = isoLocal(a);
    el.dataset.to = isoLocal(b);
    el.title = `${title}: ${isoLocal(a)} .. ${isoLocal(b)}`;
    spans.append(el);
  };
  for (const s of tl.covered) put("covered", s.from_ns / 1e6, s.to_ns / 1e6, "recorded");
  for (const s of tl.open) put("open", s.from_ns / 1e6, s.to_ns / 1e6, "recording");
  // Gaps between footage (not the empty hours before the camera's first or after its
  // last): footage on either side may lie outside this window.
  const cam = (state.cameras || []).find((c) => c.camera === state.camera) || {};
  const before = (s) => tl.covered.some((c) => c.to_ns <= s.from_ns) ||
    (cam.first_ns != null && cam.first_ns < s.from_ns);
  const after = (s) => tl.covered.some((c) => c.from_ns >= s.to_ns) ||
    (cam.last_ns != null && cam.last_ns > s.to_ns);
  for (const s of tl.gaps) {
    if (before(s) && after(s)) put("gap", s.from_ns / 1e6, s.to_ns / 1e6, "gap");
  }
  for (const h of tl.holds) put("hold", Math.max(h.from_ns / 1e6, state.viewStart),
    Math.min(h.to_ns / 1e6, state.viewStart + state.viewMs), `hold #${h.id} (${h.reason})`);
  const recorded = tl.covered.reduce((n, s) => n + (s.to_ns - s.from_ns), 0) / 1e9;
  $("status").textContent = `${(recorded / 60).toFixed(1)} min recorded in this window, ` +
    `${spans.querySelectorAll(".gap").length} gap(s), ${tl.holds.length} hold(s)`;
  drawHours();
}

function drawHours() {
  const hours = $("hours");
  hours.replaceChildren();
  for (let k = 0; k <= 6; k++) {
    const at = state.viewStart + (k / 6) * state.viewMs;
    const d = new Date(at);
    const s = document.createElement("span");
    s.style.left = `${(k / 6) * 100}%`;
    s.textContent = `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}` +
      (state.viewMs < 3600000 ? `:${String(d.getSeconds()).padStart(2, "0")}` : "");
    hours.append(s);
  }
  placeCursor();
}

$("timeline").addEventListener("click", (ev) => {
  if (!state.camera) return;
  const box = $("timeline").getBoundingClientRect();
  const at = state.viewStart + ((ev.clientX - box.left) / box.width) * state.viewMs;
  if (ev.shiftKey) setRange(Date.parse($("from").value) || at - 600000, at);
  else setRange(at, at + 600000);
});

function setRange(a, b) {
  $("from").value = isoLocal(a);
  $("to").value = isoLocal(b);
  placeCursor();
  rangeChanged();
}

function placeCursor() {
  const a = Date.parse($("from").value);
  const cursor = $("cursor");
  const inside = state.viewStart !== null && a >= state.viewStart && a < state.viewStart + state.viewMs;
  cursor.hidden = !inside;
  if (inside) cursor.style.left = `${((a - state.viewStart) / state.viewMs) * 100}%`;
}

// "&purpose=..." when one is given: recorded with each clip, export and playback (and
// required by a node whose [service] require_purpose is set).
function purposeArg() {
  const purpose = $("purpose").value.trim();
  return purpose ? `&purpose=${encodeURIComponent(purpose)}` : "";
}

function clipUrl(download) {
  const q = `from=${encodeURIComponent($("from").value.trim())}&to=${encodeURIComponent($("to").value.trim())}${purposeArg()}`;
  return `/api/v1/cameras/${encodeURIComponent(state.camera)}/clip.mp4?${q}${download ? "&download=1" : ""}`;
}

function rangeChanged() {
  const ok = state.camera && $("from").value && $("to").value;
  $("play").disabled = !ok;
  $("download").hidden = !ok || !state.mayExport;
  if (ok) $("download").href = clipUrl(true);
}
$("purpose").addEventListener("input", rangeChanged);
$("download").addEventListener("click", async (ev) => {
  ev.preventDefault();
  showError("error", null);
  const url = clipUrl(true);
  if (!(await refused(url, "HEAD"))) location.href = url;
});
$("from").addEventListener("input", rangeChanged);
$("to").addEventListener("input", rangeChanged);

let hls = null;

function camPath() { return `/api/v1/cameras/${encodeURIComponent(state.camera)}`; }

// Play through hls.js (HLS with fMP4 segments; Safari plays HLS itself). The playlist starts
// on the GOP before `from`; playback starts at `from` itself. The segments' media times are
// wall-clock times, and hls.js starts its timeline at the first segment's earliest sample
// (its initPTS): `from` is placed from that once the first segment is in. (The playlist's
// EXT-X-PROGRAM-DATE-TIME is the time of the keyframe, and audio a source sent late is
// stored with the next GOP, so a segment may begin with sound from before its keyframe.)
function playHls(url, fromMs) {
  const video = $("video");
  if (hls) { hls.destroy(); hls = null; }
  if (window.Hls && Hls.isSupported()) {
    hls = new Hls({ autoStartLoad: false, xhrSetup: (xhr) => { xhr.withCredentials = true; } });
    const player = hls;
    hls.once(Hls.Events.LEVEL_LOADED, (_e, data) => {
      const first = data.details.fragments[0];
      const pdt = first && first.programDateTime;
      if (fromMs === null || !pdt) { player.startLoad(data.details.live ? -1 : 0); return; }
      // hls.js takes the first fragment it loads as its timeline's origin: the one the
      // start position falls in, which is not always the playlist's first (a start on a
      // GOP's first instant falls in the next one), so whichever comes first is awaited.
      let originS = null;  // the wall-clock second at media time 0
      const onInitPts = (_e2, d) => {
        player.off(Hls.Events.INIT_PTS_FOUND, onInitPts);
        originS = d.initPTS / d.timescale;
      };
      const onBuffered = (_e2, d) => {
        if (d.frag.type && d.frag.type !== "main") return;
        player.off(Hls.Events.FRAG_BUFFERED, onBuffered);
        // (100 us past it: the browser keeps media times in whole microseconds, and `from`
        // falling on a frame's first instant must not round to the frame before it.)
        const at = originS === null ? null : fromMs / 1000 - originS + 0.0001;
        if (at !== null && at >= 0 && Math.abs(video.currentTime - at) > 0.001) video.currentTime = at;
        video.play().catch(() => {});  // (only once there: no frame of before `from` plays)
      };
      player.on(Hls.Events.INIT_PTS_FOUND, onInitPts);
      player.on(Hls.Events.FRAG_BUFFERED, onBuffered);
      player.startLoad(Math.max(0, (fromMs - pdt) / 1000));  // (close: the keyframe's time)
    });
    hls.on(Hls.Events.ERROR, (_e, data) => {
      if (data.fatal) showError("error", new Error(`playback: ${data.details}`));
    });
    hls.loadSource(url);
    hls.attachMedia(video);
    if (fromMs === null) video.play().catch(() => {});
  } else {
    video.src = url;
    video.play().catch(() => {});
  }
}

// Asked first, so a refusal (no footage, a bad time, no purpose where the node requires one)
// is shown as text instead of a dead player or an error saved as the file. A HEAD answer
// has no body: the error's text is then asked for with a one-byte GET.
async function refused(url, method) {
  const r = await fetch(url, { method, credentials: "same-origin" });
  if (r.ok) return false;
  const why = method === "HEAD"
    ? await fetch(url, { credentials: "same-origin", headers: { Range: "bytes=0-0" } })
    : r;
  const doc = await why.json().catch(() => ({}));
  showError("error", new Error((doc.error && doc.error.message) || `HTTP ${r.status}`));
  return true;
}

$("play").addEventListener("click", async () => {
  showError("error", null);
  const q = `from=${encodeURIComponent($("from").value.trim())}&to=${encodeURIComponent($("to").value.trim())}`;
  const url = `${camPath()}/hls.m3u8?${q}${purposeArg()}`;
  if (!(await refused(url, "GET"))) playHls(url, Date.parse($("from").value));
});

$("live").addEventListener("click", async () => {
  showError("error", null);
  // An EVENT playlist from a fixed start (a minute ago) only ever grows: every reload of it
  // keeps the segments the player already has.
  const url = `${camPath()}/hls.m3u8?live=1&from=${encodeURIComponent(isoLocal(Date.now() - 60000))}${purposeArg()}`;
  if (!(await refused(url, "GET"))) playHls(url, null);
});

start();
