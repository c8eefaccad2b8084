# vstore developer commands. Two matter to a newcomer: `make demo` and `make test`.
PY      ?= python3
VENV    := .venv
VPY     := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
EXT_SO  := $(patsubst ext/%.pyx,vstore/_ext/%.stamp,$(wildcard ext/*.pyx))

.PHONY: all venv build demo test test-pure test-slow bench lint clean

all: build

$(STAMP): pyproject.toml setup.py
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade "pip>=25.1" "setuptools>=77" wheel
	$(VPY) -m pip install -q --group test --group lint
	@# compat mode: a plain path in a .pth file. The default editable finder costs every
	@# `vstore` process about 20 ms of start-up (pathlib, importlib.util...), which a wheel
	@# install does not pay; the clip command's start-up is a benchmarked target.
	$(VPY) -m pip install -q --no-build-isolation -e . --config-settings editable_mode=compat
	touch $(STAMP)

venv: $(STAMP)

# Rebuild the compiled twins whenever a .pyx/.pxd changes (editable installs compile only once).
build: $(STAMP) vstore/_ext/.built
	@# Bytecode, as a wheel install compiles it: with PYTHONDONTWRITEBYTECODE set (CI, some
	@# shells) every command would otherwise recompile vstore on start-up.
	@$(VPY) -m compileall -q vstore tools > /dev/null

vstore/_ext/.built: $(wildcard ext/*.pyx ext/*.pxd) setup.py | $(STAMP)
	$(VPY) setup.py -q build_ext --inplace
	touch $@

demo: build
	$(VPY) -m tools.demo

# Two workers, a test file each at a time (module fixtures are built once): most tests wait
# on real time (cameras sending at their pace, schedules, timeouts), so two run in about
# half the time of one, and CI stays well inside its ten minutes.
XDIST   := -n auto --maxprocesses=4 --dist loadfile

test: build
	$(VENV)/bin/lint-imports --no-cache
	$(VPY) -m pytest -q -m "not slow" $(XDIST)
	VSTORE_NO_EXTENSIONS=1 $(VPY) -m pytest -q -m "not slow" $(XDIST) \
	  tests/test_native_parity.py tests/test_roundtrip.py tests/test_timestamps.py \
	  tests/test_index.py tests/test_record.py

test-pure: build
	VSTORE_NO_EXTENSIONS=1 $(VPY) -m pytest -q -m "not slow" $(XDIST)

test-slow: build
	$(VPY) -m pytest -q -m slow

# FFmpeg is the baseline of the ingest and clip figures: installed first when it is missing
# (as root with apt-get; otherwise the report says which rows it could not measure).
bench: build
	@command -v ffmpeg >/dev/null || .ci/install-system-deps ffmpeg || true
	$(VPY) -m tools.bench_report

lint: build
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf build vstore/_ext/*.so vstore/_ext/.built *.egg-info
