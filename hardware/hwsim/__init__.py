"""Host simulators of the charger's hardware: energy meters (Modbus RTU and DL/T 645-2007, in
process or behind a pseudo-terminal), the control pilot's ADC readings, and a card reader."""
