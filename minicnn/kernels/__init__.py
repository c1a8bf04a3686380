"""Kernels: plain functions on arrays, one backend per module, all with the same signatures.

    naive        readable nested loops and NumPy twins (the lesson and the oracle)
    numpy_ops    im2col / strided windows + BLAS
    numba_*      compiled kernels (@njit, cache=True): numba_ops wraps them for the layers,
                 numba_conv_pool is the fused conv unit, numba_config holds every Numba flag
    geometry     the one output-size formula
    dispatch     the table of which function each backend runs for each op: ops()

No module here imports layers, the model, activations or optimizers: kernels take arrays.
"""
