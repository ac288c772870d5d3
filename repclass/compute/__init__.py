"""Where the work runs: the device and autocast (runtime) and the CPUs a job may use (cpus).

May import: errors only.
"""
