"""Secrets kept out of what is shown: a source URL's password, in its user part or query."""

from __future__ import annotations

from vstore.base.redaction import redact_secrets, redact_url


def test_a_url_s_password_is_masked_in_its_user_part_and_its_query():
    url = "rtsp://cam:S3cretPass@10.0.0.5:554/stream1?user=admin&password=QueryPass&ch=1"
    shown = redact_url(url)
    assert "S3cretPass" not in shown and "QueryPass" not in shown
    assert shown.startswith("rtsp://cam:***@10.0.0.5:554/stream1?")
    assert "user=admin" in shown and "ch=1" in shown and "password=***" in shown
    assert redact_url("udp://0.0.0.0:5000") == "udp://0.0.0.0:5000"
    assert redact_url("http://h/x?token=abc123") == "http://h/x?token=***"
    assert redact_url("rtsp://[bad") == "(unparsable url)"


def test_an_error_quoting_the_url_in_any_form_is_masked():
    url = "rtsp://cam:S3cretPass@h/s?pwd=QueryPass"
    err = f"cannot open {url}: refused; ffmpeg: rtsp://cam:S3cretPass@h/s?pwd%3DQueryPass"
    shown = redact_secrets(err, url)
    assert "S3cretPass" not in shown and "QueryPass" not in shown and "refused" in shown
    assert redact_secrets("no secret here", "rtsp://h/s") == "no secret here"


def test_a_secret_is_masked_as_the_url_writes_it_too():
    """A base64 token has `+`, `/` and `=`: decoded, it no longer matched the URL an error
    quotes as written, and was shown whole."""
    for url in ("rtsp://cam/live?token=Zm9v+YmFy/cXV4=", "rtsp://cam/live?token=Zm9vYmFy%2FcXV4%3D",
                "rtsp://admin:p%40ss@cam/live"):  # fmt: skip
        shown = redact_secrets(f"cannot open {url}: refused", url)
        assert "Zm9v" not in shown and "p%40ss" not in shown, shown
