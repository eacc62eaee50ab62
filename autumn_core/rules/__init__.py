"""Pure rules: functions of data and ``now``. No I/O, no clock, no store."""
