# The two set-up commands (README): `make demo` runs the main job, `make test` runs the tests.
PY := .venv/bin/python
.DEFAULT_GOAL := demo
# The real-Asterisk tests build Asterisk once (cached in ~/.cache/advancepay) from this tarball when it is
# there; ASTERISK_BIN=/path/to/asterisk uses an installed one instead (docs/asterisk.md).
ASTERISK_SRC ?= $(wildcard $(abspath ../shared/asterisk/asterisk-22.10.1.tar.gz))
export ASTERISK_SRC

.venv/.installed: pyproject.toml scripts/bootstrap.sh
	scripts/bootstrap.sh
	touch $@

demo: .venv/.installed
	$(PY) -m callcontrol.cli demo

test: .venv/.installed
	scripts/bootstrap.sh --test-services
	@if [ -n "$(ASTERISK_SRC)$(ASTERISK_BIN)" ]; then scripts/asterisk.sh >/dev/null; fi
	$(PY) -m ruff check .
	$(PY) -m mypy
	.venv/bin/asterisklint dialplan-check asterisk_conf/extensions.conf
	$(PY) -m pytest -q

bench: .venv/.installed
	scripts/bootstrap.sh --test-services
	@if [ -n "$(ASTERISK_SRC)$(ASTERISK_BIN)" ]; then scripts/asterisk.sh >/dev/null; fi
	$(PY) -m bench

prompts: .venv/.installed
	scripts/bootstrap.sh --prompt-tools
	$(PY) -m ivr_prompts.build

lint: .venv/.installed
	$(PY) -m ruff check .
	$(PY) -m mypy
	.venv/bin/asterisklint dialplan-check asterisk_conf/extensions.conf

.PHONY: demo test bench prompts lint
