# Every task a person runs. `just --list` shows them.
set shell := ["bash", "-euo", "pipefail", "-c"]

py := ".venv/bin/python"

# install the Python environment, npm packages and Debian packages the project needs
setup:
    bash scripts/setup.sh --full

# run the whole test suite (unit, firmware under MicroPython, integration with real mosquitto and PostgreSQL)
test *ARGS: setup
    {{py}} -m pytest -q {{ARGS}}
