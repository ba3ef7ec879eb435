"""`asrtop demo`: an embedded ASR cluster (simulated FunASR nodes, real agents, real HAProxy) and load."""
