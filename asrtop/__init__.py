"""asrtop: the operator's console for GPU speech-recognition fleets."""

__version__ = "0.1.0"
