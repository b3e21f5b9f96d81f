# The two commands of the README.
.PHONY: demo test setup docs
demo:
	bash scripts/setup.sh
	.venv/bin/afl demo --out runs/demo
test:
	bash scripts/test.sh
setup:
	bash scripts/setup.sh
docs:                             # the site from the executed notebooks, into _docs/ (open _docs/index.html)
	bash scripts/setup.sh
	.venv/bin/python scripts/build_docs.py --out _docs
