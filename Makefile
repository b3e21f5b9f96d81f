# The two commands of the README.
.PHONY: demo test setup
demo:
	bash scripts/setup.sh
	.venv/bin/afl demo --out runs/demo
test:
	bash scripts/test.sh
setup:
	bash scripts/setup.sh
