"""Control pilot logic (IEC 61851-1 / SAE J1772; GB/T 18487.1 AC uses the same scheme).

Pure: no `machine`, no clock. The device shell drives the 1 kHz +-12 V PWM with the duty this
module computes, samples the ADC on the positive plateau (and, while PWM runs, on the negative
plateau) and feeds the millivolts in; this module classifies and debounces them.

Duty cycle from offered current
-------------------------------
6 A <= I <= 51 A: duty % = I / 0.6;  51 A < I <= 80 A: duty % = I / 2.5 + 64. Other currents are
refused (ValueError). Currents are integer milliamps. Duty values are rounded **down**, so the
current a vehicle reads back from the duty never exceeds the current offered. At exactly 51 A the
first formula applies (85 %).

Sensing circuit (default calibration)
-------------------------------------
The CP line (-12..+12 V) reaches the ESP32 ADC through a resistor network: R1 = 59 kOhm from CP to
the ADC node, R2 = 13 kOhm from the node to 3.3 V, R3 = 10 kOhm from the node to ground::

    V_adc = (V_cp/R1 + 3.3 V/R2) / (1/R1 + 1/R2 + 1/R3)
          = 0.08742 * V_cp + 1.3094 V        (+12 V -> 2358 mV, 0 V -> 1309 mV, -12 V -> 260 mV)

which keeps the whole swing inside the linear range of the ESP32 ADC at 11 dB attenuation
(150..2450 mV). The map from ADC mV back to CP mV is a two-point linear calibration
(`PilotCalibration`): the ADC readings at +12 V and at -12 V. The defaults come from the divider;
a charger measures its own (it drives steady +12 V and -12 V with no vehicle) and injects them.

Classification
--------------
Positive plateau, CP volts, inclusive bands (default +-1 V around nominal): A 12 V (no vehicle),
B 9 V (vehicle connected), C 6 V (charging), D 3 V (charging, ventilation), E 0 V (short / error),
F -12 V (EVSE unavailable). Anything between bands is INVALID. While PWM runs, the negative
plateau must be near -12 V (the vehicle's diode); otherwise a sample in A..D classifies as
DIODE_FAULT.

Debounce
--------
`PilotMonitor.sample()` changes the reported state only after `debounce` consecutive identical
classifications and then returns the new state as an event (None otherwise).
"""

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

STATE_A = "A"
STATE_B = "B"
STATE_C = "C"
STATE_D = "D"
STATE_E = "E"
STATE_F = "F"
INVALID = "invalid"
DIODE_FAULT = "diode_fault"

MIN_CURRENT_MA = const(6000)
MAX_CURRENT_MA = const(80000)
_LOW_RANGE_MAX_MA = const(51000)
DUTY_DIGITAL_PERMILLE = const(50)  # 5 %: digital communication requested (ISO 15118)

FULL_SCALE_PERMILLE = const(1000)
FULL_SCALE_U16 = const(65535)  # machine.PWM.duty_u16: 65535 is 100 %
FULL_SCALE_U10 = const(1023)  # 10-bit duty: 1023 is 100 %

# (state, low mV, high mV) of the positive plateau, inclusive
DEFAULT_BANDS = (
    (STATE_A, 11000, 13000),
    (STATE_B, 8000, 10000),
    (STATE_C, 5000, 7000),
    (STATE_D, 2000, 4000),
    (STATE_E, -1000, 1000),
    (STATE_F, -13000, -11000),
)
DEFAULT_DIODE_BAND = (-13000, -11000)

# default sensing divider, see the module doc
R1_OHM = const(59000)
R2_OHM = const(13000)
R3_OHM = const(10000)
VREF_MV = const(3300)


def _duty_fraction(current_ma):
    """(numerator, denominator) of the duty as a fraction of 1."""
    if not isinstance(current_ma, int) or isinstance(current_ma, bool):
        raise ValueError("current must be an int of milliamps")
    if current_ma < MIN_CURRENT_MA or current_ma > MAX_CURRENT_MA:
        raise ValueError("offered current %d mA outside 6000..80000 mA" % current_ma)
    if current_ma <= _LOW_RANGE_MAX_MA:
        return current_ma, 60000  # % = A / 0.6  ->  fraction = mA / 60000
    return current_ma + 160000, 250000  # % = A / 2.5 + 64  ->  fraction = (mA + 160000) / 250000


def duty_scaled(current_ma, full_scale):
    """floor(duty * full_scale), where full_scale is the PWM value meaning 100 %."""
    num, den = _duty_fraction(current_ma)
    return num * full_scale // den


def duty_permille(current_ma):
    """Duty in 0.1 % steps (16 A -> 266, i.e. 26.6 %)."""
    return duty_scaled(current_ma, FULL_SCALE_PERMILLE)


def duty_u16(current_ma):
    """Duty as a 16-bit PWM value (machine.PWM.duty_u16)."""
    return duty_scaled(current_ma, FULL_SCALE_U16)


def duty_u10(current_ma):
    """Duty as a 10-bit PWM value."""
    return duty_scaled(current_ma, FULL_SCALE_U10)


def current_ma_from_duty(value, full_scale=FULL_SCALE_PERMILLE):
    """The current (mA, rounded down) a vehicle reads from a duty of value/full_scale, or 0
    when the duty offers no current (below 8 % or above 97 %; 5 % asks for digital
    communication). The inverse of the formulas above as SAE J1772 vehicles apply it
    (8..10 % reads as 6 A, 96..97 % as 80 A)."""
    # compare in ppm of a full period to stay in integers
    ppm = value * 1000000 // full_scale
    if ppm < 80000 or ppm > 970000:
        return 0
    if ppm < 100000:
        return MIN_CURRENT_MA  # 8 % .. 10 %: 6 A
    if ppm <= 850000:
        return ppm * 6 // 100  # A = % * 0.6  ->  mA = ppm * 0.06
    if ppm >= 960000:
        return MAX_CURRENT_MA  # 96 % .. 97 %: 80 A
    return (ppm - 640000) // 4  # A = (% - 64) * 2.5  ->  mA = (ppm - 640000) / 4


class PilotCalibration:
    """Linear map ADC mV -> CP mV through two points: the ADC readings with the CP line at
    +12 V and at -12 V."""

    def __init__(self, adc_mv_at_p12=None, adc_mv_at_m12=None):
        if adc_mv_at_p12 is None or adc_mv_at_m12 is None:
            p, m = divider_points()
            adc_mv_at_p12 = p if adc_mv_at_p12 is None else adc_mv_at_p12
            adc_mv_at_m12 = m if adc_mv_at_m12 is None else adc_mv_at_m12
        if adc_mv_at_p12 <= adc_mv_at_m12:
            raise ValueError("+12 V must read higher than -12 V")
        self.p12 = adc_mv_at_p12
        self.m12 = adc_mv_at_m12

    def cp_mv(self, adc_mv):
        """CP voltage in mV (rounded to nearest) of an ADC reading in mV."""
        den = self.p12 - self.m12
        num = (2 * adc_mv - self.p12 - self.m12) * 12000
        return (2 * num + den) // (2 * den)

    def adc_mv(self, cp_mv):
        """The ADC reading (mV, nearest) expected for a CP voltage: the inverse map."""
        num = cp_mv * (self.p12 - self.m12) + 12000 * (self.p12 + self.m12)
        return (2 * num + 24000) // 48000


def divider_points(r1=R1_OHM, r2=R2_OHM, r3=R3_OHM, vref_mv=VREF_MV):
    """(ADC mV at +12 V, ADC mV at -12 V), nearest, of the sensing divider."""
    den = r2 * r3 + r1 * r3 + r1 * r2

    def at(cp_mv):
        num = cp_mv * r2 * r3 + vref_mv * r1 * r3
        return (2 * num + den) // (2 * den)

    return at(12000), at(-12000)


def classify(cp_mv, bands=DEFAULT_BANDS):
    """State of a positive-plateau CP voltage (mV), or INVALID between bands."""
    for state, lo, hi in bands:
        if lo <= cp_mv <= hi:
            return state
    return INVALID


def diode_ok(neg_cp_mv, band=DEFAULT_DIODE_BAND):
    """True when the negative plateau is near -12 V."""
    return band[0] <= neg_cp_mv <= band[1]


def vehicle_present(state):
    return state == STATE_B or state == STATE_C or state == STATE_D


def charging_requested(state):
    """The vehicle asks for energy (the contactor may close only here, with an authorized
    session)."""
    return state == STATE_C or state == STATE_D


def is_fault(state):
    """A pilot fault: short (E), a voltage between bands, or a missing vehicle diode. (F is the
    state the EVSE itself drives when unavailable; the shell knows whether it does.)"""
    return state == STATE_E or state == INVALID or state == DIODE_FAULT


class PilotMonitor:
    """Classifies ADC samples and debounces them into states and events."""

    def __init__(self, debounce=3, calibration=None, bands=DEFAULT_BANDS, diode_band=DEFAULT_DIODE_BAND):
        if debounce < 1:
            raise ValueError("debounce must be at least 1")
        self.debounce = debounce
        self.calibration = calibration if calibration is not None else PilotCalibration()
        self.bands = bands
        self.diode_band = diode_band
        self.state = None  # debounced state; None until `debounce` samples agree
        self._candidate = None
        self._count = 0

    def classify_sample(self, pos_adc_mv, neg_adc_mv=None, pwm_on=False):
        """Classification of one sample (no debounce)."""
        cal = self.calibration
        state = classify(cal.cp_mv(pos_adc_mv), self.bands)
        if pwm_on and (state == STATE_A or state == STATE_B or state == STATE_C or state == STATE_D):
            if neg_adc_mv is None:
                raise ValueError("the negative plateau must be sampled while PWM runs")
            if not diode_ok(cal.cp_mv(neg_adc_mv), self.diode_band):
                return DIODE_FAULT
        return state

    def sample(self, pos_adc_mv, neg_adc_mv=None, pwm_on=False):
        """Feed one sample; return the new debounced state when it changed, else None."""
        return self.feed_class(self.classify_sample(pos_adc_mv, neg_adc_mv, pwm_on))

    def feed_class(self, cls):
        """Debounce one classification; return the new state when it changed, else None."""
        if cls == self.state:
            self._candidate = None
            self._count = 0
            return None
        if cls == self._candidate:
            self._count += 1
        else:
            self._candidate = cls
            self._count = 1
        if self._count >= self.debounce:
            self.state = cls
            self._candidate = None
            self._count = 0
            return cls
        return None

    def reset(self):
        """Forget the debounced state (e.g. after the shell changed the PWM output)."""
        self.state = None
        self._candidate = None
        self._count = 0
