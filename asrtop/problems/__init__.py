"""PURE rules over FleetSnapshot + FleetHistory -> problems with severity, hysteresis and a suggested action."""
