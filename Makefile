# Thin wrappers around bootstrap.sh (which works on a fresh Debian machine without make).
.PHONY: demo test setup lab-down
demo:
	./bootstrap.sh demo
test:
	./bootstrap.sh test
setup:
	./bootstrap.sh setup
lab-down:
	.venv/bin/bluegreen lab down
