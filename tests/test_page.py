"""The node's browser page in a real headless Chromium (Debian's chromium and chromedriver,
driven by Selenium): sign in with a token, pick a camera, the day's timeline shows the gap
the footage has, the video plays real frames, and the download is the clip of the selected
range. A screenshot is kept in build/test-artifacts/page.png."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from tests.conftest import START_NS
from tests.service_helpers import make_token, start_node, vstore, wait_for
from vstore.base.timebase import format_time

CHROMEDRIVER = shutil.which("chromedriver")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    not (CHROMEDRIVER and CHROMIUM), reason="chromium and chromium-driver not installed (.ci/run)"
)
ARTIFACTS = Path(__file__).resolve().parent.parent / "build" / "test-artifacts"
GAP_S = 60  # between the two recordings


@pytest.fixture(scope="module")
def served(tmp_path_factory, media_dir):
    from tests.conftest import make_media

    store = tmp_path_factory.mktemp("page") / "store"
    vstore("init", "--store", str(store))
    src = make_media(media_dir, "page.mp4", 8.0, codec="h264", gop_frames=25, audio="aac")
    second = START_NS + (8 + GAP_S) * 10**9
    for at in (START_NS, second):
        vstore("import", str(src), "--camera", "gate", "--start", format_time(at),
               "--store", str(store))  # fmt: skip
    _record_with_late_audio(store, src, "late", START_NS)
    token = make_token(store, "investigator", "*", name="det. page")
    node = start_node(store)
    yield node, token
    assert node.stop() == 0


LATE_S = 1.0  # how long after its video the "late" camera's sound arrives


def _record_with_late_audio(store: Path, src: Path, camera: str, start_ns: int) -> None:
    """Record ``src`` as a camera whose sound arrives LATE_S after the video it goes with
    (as some cameras and muxers send it): each GOP's chunk then holds the sound of the
    second before its keyframe."""
    from vstore.api import open_store
    from vstore.ingest.av_source import open_container
    from vstore.ingest.tracks import tracks_from_av
    from vstore.store.camera_writer import open_writer

    container = open_container(str(src))
    st = open_store(store)
    try:
        got = tracks_from_av(container)
        streams = [container.streams[i] for i in got.stream_to_track]
        held: list = []  # (due, packet) of sound not sent yet
        with open_writer(st, camera, got.tracks, start_ns=start_ns) as w:

            def send(pkt) -> None:
                w.write_raw(got.stream_to_track[pkt.stream_index], pkt.pts, pkt.dts,
                            pkt.is_keyframe, bytes(pkt))  # fmt: skip

            for pkt in container.demux(streams):
                if pkt.size == 0:
                    continue
                at_s = float(pkt.pts * pkt.time_base)
                if pkt.stream.type == "audio":
                    held.append((at_s + LATE_S, pkt))
                    continue
                while held and held[0][0] <= at_s:
                    send(held.pop(0)[1])
                send(pkt)
            for _due, pkt in held:
                send(pkt)
    finally:
        st.close()
        container.close()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900",
                "--autoplay-policy=no-user-gesture-required", "--disable-dev-shm-usage"):  # fmt: skip
        opts.add_argument(arg)
    drv = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    drv.set_script_timeout(60)
    yield drv
    drv.quit()


def test_sign_in_see_the_gap_play_and_download(served, browser):
    from selenium.webdriver.common.by import By

    node, token = served
    browser.get(node.url + "/")
    # A wrong token is refused with a message; the right one signs in.
    wait_for(lambda: browser.find_element(By.ID, "signin").is_displayed(), what="sign-in form")
    browser.find_element(By.ID, "token").send_keys("vst_wrong_token")
    browser.find_element(By.CSS_SELECTOR, "#signin-form button").click()
    wait_for(lambda: browser.find_element(By.ID, "signin-error").text, what="the refusal")
    assert "not valid" in browser.find_element(By.ID, "signin-error").text
    field = browser.find_element(By.ID, "token")
    field.clear()
    field.send_keys(token)
    browser.find_element(By.CSS_SELECTOR, "#signin-form button").click()
    cam = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#cameras li"), what="cameras")
    assert [c.get_attribute("data-camera") for c in cam] == ["gate", "late"]
    assert "det. page" in browser.find_element(By.ID, "who").text
    cam[0].click()

    # The timeline: two recorded spans and the minute between them as a gap.
    gaps = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#spans .gap"), what="the gap")
    assert len(gaps) == 1
    gap_from = browser.execute_script("return Date.parse(arguments[0].dataset.from)", gaps[0])
    gap_to = browser.execute_script("return Date.parse(arguments[0].dataset.to)", gaps[0])
    assert abs(gap_from - (START_NS // 10**6 + 8000)) < 200
    assert abs((gap_to - gap_from) / 1000 - GAP_S) < 0.5
    assert len(browser.find_elements(By.CSS_SELECTOR, "#spans .covered")) == 2
    # A window that begins inside the gap (the footage before it out of view) shows it too.
    browser.execute_script(
        f"state.viewStart = {START_NS // 10**6 + 9000}; state.viewMs = 600000; loadTimeline();"
    )
    wait_for(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#spans .covered")) == 1,
             what="the 10 minute window")  # fmt: skip
    (gap,) = browser.find_elements(By.CSS_SELECTOR, "#spans .gap")
    assert abs(browser.execute_script("return Date.parse(arguments[0].dataset.to)", gap)
               - (START_NS // 10**6 + (8 + GAP_S) * 1000)) < 200  # fmt: skip
    assert "1 gap(s)" in browser.find_element(By.ID, "status").text

    # Select the first recording's 1.5 s .. 6 s and play it (HLS through hls.js): it starts
    # at 1.5 s, not at the GOP before, and advances over real frames at wall-clock times.
    a, b = START_NS + 1_500_000_000, START_NS + 6 * 10**9
    for fid, t in (("from", a), ("to", b)):
        el = browser.find_element(By.ID, fid)
        el.clear()
        el.send_keys(format_time(t))
    browser.find_element(By.ID, "play").click()
    wait_for(lambda: browser.execute_script(
        "const v = document.getElementById('video'); return v.currentTime > 1.5 && v.videoWidth > 0"
    ), what="the video to play")  # fmt: skip
    frames = browser.execute_script(
        "const v = document.getElementById('video');"
        "return v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality().totalVideoFrames : -1"
    )
    assert frames != 0
    got = browser.execute_script(
        "const v = document.getElementById('video');"
        "return [hls !== null && hls.media === v, v.currentTime, hls.playingDate.getTime()]"
    )
    assert got[0], "played through hls.js"
    gop_ms = START_NS // 10**6 + 1000  # the playlist starts on the GOP at 1 s
    assert abs(got[2] - (gop_ms + got[1] * 1000)) < 300  # media time is wall-clock time
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "page.png"))

    # The download link is the clip of the selected range, byte for byte.
    href = browser.find_element(By.ID, "download").get_attribute("href")
    digest = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0], {credentials: 'same-origin'}).then(r => r.arrayBuffer())"
        ".then(b => crypto.subtle.digest('SHA-256', b)).then(h => done("
        "Array.from(new Uint8Array(h)).map(x => x.toString(16).padStart(2, '0')).join('')))",
        href,
    )
    q = f"from={format_time(a).replace('+', '%2B')}&to={format_time(b).replace('+', '%2B')}"
    direct = node.get(f"/api/v1/cameras/gate/clip.mp4?{q}", token)
    assert direct.status == 200
    assert digest == hashlib.sha256(direct.body).hexdigest()


def test_the_page_without_a_session_asks_for_a_token_and_the_api_refuses(served, browser):
    from selenium.webdriver.common.by import By

    node, _token = served
    browser.delete_all_cookies()
    browser.get(node.url + "/")
    wait_for(lambda: browser.find_element(By.ID, "signin").is_displayed(), what="sign-in form")
    assert not browser.find_element(By.ID, "app").is_displayed()
    status = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch('/api/v1/cameras').then(r => done(r.status))"
    )
    assert status == 401


def test_live_plays_the_edge_of_a_recording_camera(tmp_path, browser):
    """A camera the node records now: Live plays its newest footage at wall-clock time."""
    from selenium.webdriver.common.by import By

    from tools.camsim import StreamSpec, TcpCamera

    store = tmp_path / "store"
    vstore("init", "--store", str(store))
    with TcpCamera(StreamSpec(width=320, height=240, gop_frames=25)) as cam:
        with open(store / "vstore.toml", "a") as f:
            f.write(f'\n[cameras.street]\nurl = "{cam.url}"\n')
        token = make_token(store, "viewer", "*", name="watch")
        node = start_node(store)
        try:
            wait_for(lambda: node.get("/api/v1/cameras/street", token).json().get("recorded_ns", 0)
                  > 3 * 10**9, what="footage")  # fmt: skip
            browser.delete_all_cookies()
            browser.get(node.url + "/")
            wait_for(lambda: browser.find_element(By.ID, "signin").is_displayed(), what="sign-in")
            browser.find_element(By.ID, "token").send_keys(token)
            browser.find_element(By.CSS_SELECTOR, "#signin-form button").click()
            cams = wait_for(
                lambda: browser.find_elements(By.CSS_SELECTOR, "#cameras li"), what="cams"
            )
            cams[0].click()
            live = browser.find_element(By.ID, "live")
            wait_for(live.is_displayed, what="the Live button")
            live.click()
            wait_for(lambda: browser.execute_script(
                "const v = document.getElementById('video');"
                "return v.currentTime > 1 && hls !== null && hls.playingDate !== null"),
                timeout_s=45, what="live")  # fmt: skip
            behind_ms = browser.execute_script("return Date.now() - hls.playingDate.getTime()")
            assert 0 < behind_ms < 20_000  # near the edge: GOPs of 1 s, a few held back
        finally:
            assert node.stop() == 0


def test_play_from_just_before_a_keyframe_that_falls_between_milliseconds(
    tmp_path, media_dir, browser
):
    """A `from` half a millisecond before a keyframe (the page and the playlist's times are
    whole milliseconds; a live camera's keyframes are not): the start position fell on the
    playlist's second fragment, which hls.js loaded first, and the page waited for the
    first's events for ever, paused. It plays, from the frame shown at `from`."""

    from tests.conftest import make_media

    store = tmp_path / "store"
    vstore("init", "--store", str(store))
    # GOPs of 31 frames at 30 fps (1.0333 s) from 0.1 ms: keyframe 2 at 2.06677 s and
    # keyframe 3 at 3.1001 s. A `from` of 3.100 s starts the playlist on GOP 2, whose time
    # it gives as 2.066 s: the start position, 1.034 s in, lies past GOP 2's 1.0333 s.
    src = make_media(media_dir, "page-sub-ms.mp4", 6.0, codec="h264", fps=30, gop_frames=31)
    start = format_time(START_NS).replace(".000+", ".000100+")  # (0.1 ms: past a millisecond)
    vstore("import", str(src), "--camera", "cam", "--start", start,
           "--store", str(store))  # fmt: skip
    token = make_token(store, "investigator", "*", name="det. sub-ms")
    node = start_node(store)
    try:
        browser.delete_all_cookies()
        _open_camera(browser, node.url, token, "#cameras li", "case 42")
        seen = _play(browser, START_NS + 3_100_000_000, START_NS + 5 * 10**9)
        # Frame 93 (keyframe 3) begins 0.1 ms after `from`: the page starts on it (shown
        # paused, then played), so the first frame presented once playing is it or the next.
        assert seen[0][1] in (93, 94), seen
    finally:
        assert node.stop() == 0


def _open_camera(browser, url: str, token: str, camera_css: str, purpose: str) -> None:
    """Sign in to the page at ``url`` (unless signed in), open the camera ``camera_css``
    finds, type a purpose, and install READ_COUNTER."""
    from selenium.webdriver.common.by import By

    browser.get(url + "/")
    field = wait_for(lambda: browser.find_element(By.ID, "token"), what="sign-in form")
    if browser.find_element(By.ID, "signin").is_displayed():
        field.send_keys(token)
        browser.find_element(By.CSS_SELECTOR, "#signin-form button").click()
    cam = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, camera_css), what="camera")
    cam[0].click()
    browser.find_element(By.ID, "purpose").send_keys(purpose)
    browser.execute_script(READ_COUNTER)


def _play(browser, from_ns: int, to_ns: int) -> list:
    """Type the range, press Play, and return [(currentTime, frame counter)] of the first
    frame presented once playing (READ_COUNTER installed)."""
    from selenium.webdriver.common.by import By

    for fid, at in (("from", from_ns), ("to", to_ns)):
        el = browser.find_element(By.ID, fid)
        el.clear()
        el.send_keys(format_time(at))
    browser.execute_script(
        "const v = document.getElementById('video'); v.pause(); window.seen = [];"
        "v.addEventListener('playing', () => v.requestVideoFrameCallback("
        "  () => window.seen.push([v.currentTime, window.readCounter(v)])), {once: true});"
    )
    browser.find_element(By.ID, "play").click()
    return wait_for(lambda: browser.execute_script("return window.seen"), 30, "the video to play")


# The counter camsim draws in each picture (tools/camsim.py): 16 black or white blocks
# along the top, bit 0 first.
READ_COUNTER = """
window.readCounter = (v) => {
  const c = document.createElement('canvas');
  c.width = v.videoWidth; c.height = v.videoHeight;
  const g = c.getContext('2d', {willReadFrequently: true});
  g.drawImage(v, 0, 0);
  const bw = Math.floor(c.width / 16), bh = Math.max(16, Math.floor(c.height / 12));
  let n = 0;
  for (let b = 0; b < 16; b++) {
    const p = g.getImageData(b * bw + Math.floor(bw / 2), Math.floor(bh / 2), 1, 1).data;
    if ((p[0] + p[1] + p[2]) / 3 >= 128) n |= 1 << b;
  }
  return n;
};
"""


def test_play_starts_at_from_when_the_sound_came_late(served, browser):
    """A camera whose sound arrives a second after its video: each HLS segment then begins
    with sound from before its keyframe, where hls.js starts its timeline. Play still
    starts on the frame of `from`, mid-GOP, not a second before it."""

    node, token = served
    _open_camera(browser, node.url, token, '#cameras li[data-camera="late"]', "case 41")
    fps = 25  # (camsim's default)
    for at_frame in (88, 112):  # mid-GOP (GOPs of 25 frames), twice in one page
        a = START_NS + at_frame * 10**9 // fps
        seen = _play(browser, a, a + 3 * 10**9)
        # The first frame presented once playing: `from`'s, or the one after it (the
        # frame shown where it paused to start is presented before "playing").
        assert seen[0][1] - at_frame in (0, 1), seen
    # The purpose typed in is recorded with the playback, as with a download.
    out = vstore("audit", "--store", str(node.store), "--action", "view_playback", "--json")
    recs = __import__("json").loads(out.stdout)["records"]
    assert [r["detail"]["purpose"] for r in recs if r["detail"]["camera"] == "late"] == [
        "case 41"
    ] * 2
