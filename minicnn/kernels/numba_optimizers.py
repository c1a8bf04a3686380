"""The optimizers' update rules in Numba: one pass over each parameter instead of NumPy's six.

Each kernel does, element by element, exactly the IEEE operations optimizers.py does with whole
arrays, in the same order and the same dtype, so the two are bit-identical (tested): the
formulas and their Keras sources are documented there. That is why these kernels are compiled
without fastmath: contracting a*b + c into one fused multiply-add would round once instead of
twice, and Adam's steps would drift from the NumPy path and from Keras.

NumPy's version walks each array six times and allocates four temporaries the size of the
parameter; one compiled pass is an order of magnitude faster (README, "How the kernels were
chosen").

All arrays are flat, C-contiguous views of one parameter and its slots: w, g, m, v (P,).

Each rule comes as a pair: ``*_is_finite`` computes the step without writing anything and says
whether every new value (weight and slots) would be finite; the optimizer runs it on every
parameter before it lets ``*_update`` write any (optimizers.Optimizer.apply), so a step that
would put NaN or inf into the model is refused as a whole. The check reads the same arrays and
does the same arithmetic, which costs about as much as the update itself.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Not numba_config.JIT: that one allows contraction (see the module docstring). error_model
# 'numpy': x / 0 gives inf or nan as in NumPy instead of raising ZeroDivisionError; the check
# Python's model needs before each division kept the loop from vectorising (several times
# slower).
EXACT = dict(cache=True, nogil=True, error_model="numpy")


@njit(**EXACT)
def adam_update(w, g, m, v, alpha, one_minus_beta_1, one_minus_beta_2, epsilon):
    """Keras's Adam step in place: m += (g - m)(1 - b1); v += (g^2 - v)(1 - b2);
    w -= (m * alpha) / (sqrt(v) + epsilon). Scalars in the arrays' dtype."""
    for i in range(w.size):
        gi = g[i]
        mi = m[i] + (gi - m[i]) * one_minus_beta_1
        vi = v[i] + (gi * gi - v[i]) * one_minus_beta_2
        m[i] = mi
        v[i] = vi
        w[i] = w[i] - (mi * alpha) / (np.sqrt(vi) + epsilon)


@njit(**EXACT)
def adam_update_is_finite(w, g, m, v, alpha, one_minus_beta_1, one_minus_beta_2, epsilon):
    """True when adam_update with these arguments would leave w, m and v finite."""
    bad = False
    for i in range(w.size):
        gi = g[i]
        mi = m[i] + (gi - m[i]) * one_minus_beta_1
        vi = v[i] + (gi * gi - v[i]) * one_minus_beta_2
        wi = w[i] - (mi * alpha) / (np.sqrt(vi) + epsilon)
        # x - x is 0 for a finite x and NaN for inf or NaN; an or-reduction vectorises
        bad |= (mi - mi != 0) | (vi - vi != 0) | (wi - wi != 0)
    return not bad


@njit(**EXACT)
def sgd_momentum_update(w, g, m, lr, momentum, nesterov):
    """Keras's SGD with momentum in place: m = momentum*m - lr*g; then w += m, or with
    nesterov w += momentum*m - lr*g (the new m). Scalars in the arrays' dtype."""
    for i in range(w.size):
        step = g[i] * lr
        mi = m[i] * momentum - step
        m[i] = mi
        w[i] = w[i] + (mi * momentum - step if nesterov else mi)


@njit(**EXACT)
def sgd_momentum_update_is_finite(w, g, m, lr, momentum, nesterov):
    """True when sgd_momentum_update with these arguments would leave w and m finite."""
    bad = False
    for i in range(w.size):
        step = g[i] * lr
        mi = m[i] * momentum - step
        wi = w[i] + (mi * momentum - step if nesterov else mi)
        bad |= (mi - mi != 0) | (wi - wi != 0)
    return not bad
