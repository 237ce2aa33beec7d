"""Simulated control pilot: the ADC millivolts the charger's sensing circuit would read.

The model is the physical circuit, not the firmware's calibration turned around:

- the EVSE drives +12 V / -12 V through its 1 kOhm source resistor;
- the vehicle hangs a diode (0.7 V) and resistors from CP to PE: state A nothing, B 2.74 kOhm,
  C 2.74 kOhm || 1.3 kOhm, D 2.74 kOhm || 270 Ohm; state E is CP shorted to PE; a vehicle whose
  diode is missing (`diode=False`) loads the negative plateau too;
- the sensing network (R1 from CP to the ADC node, R2 from the node to 3.3 V, R3 to ground; the
  defaults of firmware/core/pilot.py) loads the line as well;
- state F is the EVSE's own steady -12 V output (`evse="-12"`).

`read()` returns (positive-plateau ADC mV, negative-plateau ADC mV or None when no PWM runs),
optionally with Gaussian noise (seeded) and quantised to an ADC step.
"""

from __future__ import annotations

import random

VEHICLE_OHMS = {
    "A": None,
    "B": 2740.0,
    "C": 1.0 / (1 / 2740.0 + 1 / 1300.0),
    "D": 1.0 / (1 / 2740.0 + 1 / 270.0),
    "E": 0.0,
}
EVSE_OUTPUTS = ("pwm", "+12", "-12")


class PilotSim:
    def __init__(self, r1: float = 59000.0, r2: float = 13000.0, r3: float = 10000.0, vref: float = 3.3,
                 source_ohm: float = 1000.0, diode_drop: float = 0.7, noise_mv: float = 0.0,
                 adc_step_mv: float = 0.0, seed: int = 0):
        self.r1, self.r2, self.r3, self.vref = r1, r2, r3, vref
        self.source_ohm = source_ohm
        self.diode_drop = diode_drop
        self.noise_mv = noise_mv
        self.adc_step_mv = adc_step_mv
        self._rng = random.Random(seed)
        self.vehicle = "A"
        self.diode = True
        self.evse = "pwm"

    def set_vehicle(self, state: str, diode: bool = True) -> None:
        if state not in VEHICLE_OHMS:
            raise ValueError(f"vehicle state must be one of A..E, not {state!r}")
        self.vehicle = state
        self.diode = diode

    def set_evse(self, output: str) -> None:
        """'pwm' (the 1 kHz square wave), '+12' (steady, no offer), '-12' (state F)."""
        if output not in EVSE_OUTPUTS:
            raise ValueError(f"EVSE output must be one of {EVSE_OUTPUTS}")
        self.evse = output

    # -- circuit --------------------------------------------------------------------------
    def _sense_thevenin(self) -> tuple[float, float]:
        """(open-circuit volts, resistance) of the sensing network seen from CP."""
        r23 = self.r2 * self.r3 / (self.r2 + self.r3)
        return self.vref * self.r3 / (self.r2 + self.r3), self.r1 + r23

    def cp_volts(self, source_v: float) -> float:
        """CP line voltage with the EVSE source at `source_v`."""
        if self.vehicle == "E":
            return 0.0
        v_th, r_in = self._sense_thevenin()
        g = 1 / self.source_ohm + 1 / r_in
        i = source_v / self.source_ohm + v_th / r_in
        v_open = i / g
        rv = VEHICLE_OHMS[self.vehicle]
        if rv is None:
            return v_open
        drop = self.diode_drop if self.diode else 0.0
        if self.diode and v_open <= drop:
            return v_open  # diode blocks
        return (i + drop / rv) / (g + 1 / rv)

    def adc_volts(self, cp_v: float) -> float:
        """Voltage at the ADC pin for a CP voltage."""
        g1, g2, g3 = 1 / self.r1, 1 / self.r2, 1 / self.r3
        return (cp_v * g1 + self.vref * g2) / (g1 + g2 + g3)

    def plateaus(self) -> tuple[float, float | None]:
        """(positive plateau CP volts, negative plateau CP volts or None)."""
        if self.evse == "+12":
            return self.cp_volts(12.0), None
        if self.evse == "-12":
            return self.cp_volts(-12.0), None
        return self.cp_volts(12.0), self.cp_volts(-12.0)

    def _to_adc_mv(self, cp_v: float) -> int:
        mv = self.adc_volts(cp_v) * 1000.0
        if self.noise_mv:
            mv += self._rng.gauss(0.0, self.noise_mv)
        if self.adc_step_mv:
            mv = round(mv / self.adc_step_mv) * self.adc_step_mv
        return int(round(mv))

    def read(self) -> tuple[int, int | None]:
        """(positive-plateau ADC mV, negative-plateau ADC mV or None)."""
        pos, neg = self.plateaus()
        return self._to_adc_mv(pos), None if neg is None else self._to_adc_mv(neg)

    @property
    def pwm_on(self) -> bool:
        return self.evse == "pwm"
