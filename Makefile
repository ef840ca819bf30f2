# The two commands a new machine needs: `make demo` and `make test`.
.PHONY: demo test setup bench gpu-check

setup:
	@./scripts/setup.sh

demo: setup
	.venv/bin/ftwb

test: setup
	.venv/bin/python -m pytest -q -n 2 --durations=15

bench: setup
	.venv/bin/python benchmarks/run_all.py

# One H100/H200, no internet, under 8 minutes: the CUDA paths and their numbers. Uses the
# machine's own Python (with its CUDA torch); wheels it lacks are installed from .whl/.
gpu-check:
	$${PYTHON:-python3} benchmarks/gpu_check.py
