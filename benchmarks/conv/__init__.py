"""The conv kernel benchmark, ``python -m benchmarks.conv`` (see __main__.py for the options).

Read in this order:
    problems.py   the shapes, their FLOP counts, random inputs and reduced twins
    impls.py      every implementation, listed one by one, adapted to the same passes
    run.py        the correctness gate, then the timing; scaling sweeps; Numba compile times
    report.py     the terminal tables and the PNG figures
    __main__.py   the command line
"""
