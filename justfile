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

# run mosquitto and the bureau node(s) until Ctrl-C (data in var/up); CHARGERS simulated chargers charge in a loop; DB=postgres: a local PostgreSQL cluster in var/up/postgres, one database per node
up NODES="4" CHARGERS="0": setup
    {{py}} scripts/up.py --nodes {{NODES}} --chargers {{CHARGERS}} --db "${DB:-sqlite}"

# benchmarks: end-to-end ingest beside the verification limit, with CPU-ms per 1,000 receipts by component (py-spy); a node's RSS from 10k to 1M committed receipts and bytes on disk per receipt; the state map per receipt and its proof sizes; firmware signing under MicroPython (WebAssembly, unix 32/64-bit); the firmware's smallest heap (frozen, 32-bit); sealed peer-link throughput; drivers' balance reads under ingest load; balance-proof size and verification time in the phone page (Chromium); last, a table of the goals beside this run's figures. NAMES: only those (bench/run_all.py)
bench *NAMES: setup
    {{py}} bench/run_all.py {{ if NAMES == "" { "" } else { "--only " + NAMES } }}

# compile the firmware with mpy-cross (xtensawin) and report each module's size; write the custom ESP32 image's freeze manifest and print how to build it
firmware-build: setup
    {{py}} scripts/firmware_build.py

# re-verify a stored chain from genesis (every certificate, Merkle root, signature, state replay)
verify-chain GENESIS DB: setup
    {{py}} -m bureau.cli verify-chain --genesis {{GENESIS}} --db {{DB}}

# migrate a node's database (URL) to this code's schema, the node stopped; JSON: revisions before and after
db-upgrade DB: setup
    {{py}} -m bureau.cli db upgrade --db-url {{DB}}

# write deploy/example/: four bureaus on four hosts as init-network makes them (each bureau.env, the genesis, mosquitto.conf), no secrets
deploy-example: setup
    {{py}} scripts/deploy_example.py

# deterministic simulation of the consensus cluster: N seeded schedules of faults and a Byzantine node
sim SEEDS="1000" NODES="4": setup
    {{py}} -m bureau.consensus.sim --seeds {{SEEDS}} --nodes {{NODES}}

# MINUTES of simulated chargers against 4 bureau processes and mosquitto under seeded faults and hostile traffic; JSON last line
soak MINUTES="10": setup
    {{py}} scripts/soak.py --minutes {{MINUTES}}

# type-check the firmware against the ESP32 MicroPython stubs (mypy)
firmware-typecheck: setup
    {{py}} scripts/firmware_typecheck.py

# write a MicroPython image (from micropython.org, ESP32_GENERIC) to an ESP32 on PORT
flash-micropython PORT IMAGE: setup
    .venv/bin/esptool.py --chip esp32 --port {{PORT}} erase_flash
    .venv/bin/esptool.py --chip esp32 --port {{PORT}} --baud 460800 write_flash -z 0x1000 {{IMAGE}}

# install, provision and enroll a charger on PORT (CONFIG: hardware/board/config.example.json); ARGS: --node URL --operator-key FILE ... (scripts/flash.py --help); DRY_RUN=1 prints what it would do
flash PORT CONFIG *ARGS: firmware-build
    {{py}} scripts/flash.py {{PORT}} {{CONFIG}} {{ARGS}}

# N simulated chargers (the firmware's own code, multiplexed over a few processes) through a simulated day against 4 bureaus and mosquitto, phones querying meanwhile; report, plots in var/fleet-report, JSON last line
fleet N="2000" *ARGS: setup
    {{py}} scripts/fleet.py --chargers {{N}} {{ARGS}}
