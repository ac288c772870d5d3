"""Where the work runs: the device and autocast (runtime), the CPUs a job may use (cpus), and
which kernels run through torch.compile (compiling).

May import: errors only.
"""
