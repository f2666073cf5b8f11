# The two set-up commands (README): `make demo` runs the main job, `make test` runs the tests.
PY := .venv/bin/python
.DEFAULT_GOAL := demo

.venv/.installed: pyproject.toml scripts/bootstrap.sh
	scripts/bootstrap.sh
	touch $@

demo: .venv/.installed
	$(PY) -m callcontrol.cli demo

test: .venv/.installed
	scripts/bootstrap.sh --test-services
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(PY) -m pytest -q

bench: .venv/.installed
	scripts/bootstrap.sh --test-services
	$(PY) -m bench

prompts: .venv/.installed
	scripts/bootstrap.sh --prompt-tools
	$(PY) -m ivr_prompts.build

lint: .venv/.installed
	$(PY) -m ruff check .
	$(PY) -m mypy

.PHONY: demo test bench prompts lint
