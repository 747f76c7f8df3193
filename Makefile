# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# Each creates the virtual environment (.venv) first if it is missing or stale.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test stress bench clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check uv
	$(VENV)/bin/uv pip install --quiet --compile-bytecode --python $(PY) -c requirements.lock -e '.[test,bench]'
	touch $(STAMP)

demo: $(STAMP)
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m fraud_detector.demo

test: $(STAMP)
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
