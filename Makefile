# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# Each creates the virtual environment (.venv) first if it is missing or stale.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test browser stress bench clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check uv
	$(VENV)/bin/uv pip install --quiet --compile-bytecode --python $(PY) -c requirements.lock -e '.[all,example,test,bench]'
	touch $(STAMP)

demo: $(STAMP)
	PATH="$(abspath $(VENV))/bin:$$PATH" PYTHONPATH=src $(PY) -m fraud_detector.demo  # the reference project: not in the package

# The report's browser test (tests/workflow/test_report_browser.py) needs Debian's chromium and
# its driver: installed here when missing, as root (CI) or with sudo, never asking (no stdin).
# A user who cannot install them is told how; the test then fails, it never skips.
browser:
	@if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ]; then SUDO=; \
		elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; \
		else echo "warning: chromium and chromium-driver are missing and this user cannot install them:" \
			"run 'sudo apt-get install -y chromium chromium-driver' (the report's browser test fails without them)" >&2; \
			exit 0; fi; \
		echo "installing chromium and chromium-driver for the report's browser test" >&2; \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver </dev/null \
		|| { $$SUDO apt-get update -q </dev/null && \
		     $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver </dev/null; }; \
	fi

test: $(STAMP) browser
	$(PY) -m mypy  # src/tether, configured in pyproject.toml
	$(VENV)/bin/lint-imports  # the layers and the pure core: [tool.importlinter] in pyproject.toml
	$(PY) -m compileall -q src  # every CLI subprocess of the suite would otherwise recompile tether
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m pytest -q -n 2 --dist worksteal --durations=25

stress: $(STAMP)
	PATH="$(abspath $(VENV))/bin:$$PATH" TETHER_STRESS=50 TETHER_RACE_ROUNDS=20 $(PY) -m pytest -q -n 2 --timeout 3600 \
		tests/workflow/test_deploy.py::test_kill_9_at_random_points_never_leaves_a_mixed_current \
		tests/workflow/test_faults.py::test_kill_9_during_promotion_leaves_the_old_or_the_new_head \
		tests/workflow/test_faults.py::test_kill_9_during_checkout_is_repaired_by_the_next_checkout \
		tests/workflow/test_faults.py::test_concurrent_promotions_from_two_clones_one_winner_per_round \
		tests/workflow/test_environments.py::test_concurrent_promotions_in_one_clone_one_winner_per_round

bench: $(STAMP)
	$(PY) -m compileall -q src  # start-up is measured as users get it: with bytecode
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) bench/run.py

clean:
	rm -rf $(VENV) sandbox bench/out
