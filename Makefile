# The two commands a new machine needs: `make demo` and `make test`.
.PHONY: demo test setup bench

setup:
	@./scripts/setup.sh

demo: setup
	.venv/bin/ftwb

test: setup
	.venv/bin/python -m pytest -q -n 2 --durations=15

bench: setup
	.venv/bin/python benchmarks/run_all.py
