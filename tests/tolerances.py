"""Every tolerance the suite uses, by regime, each with the reason it is what it is."""

# float64 finite differences, h = 1e-6: truncation O(h^2) ~ 1e-12 and rounding ~ 1e-16 / h
# ~ 1e-10 relative; 1e-7 leaves three orders of margin (the bar).
GRADCHECK_F64 = 1e-7

# Two float64 implementations of the same sum in different orders: a few ulps of the result.
KERNEL_F64 = 1e-12

# Two float32 implementations of the same sums (loops vs BLAS): order-dependent rounding of
# sums of up to a few hundred terms; relative to the largest magnitude of the result.
KERNEL_F32 = 2e-5

# Optimizer steps computed in float32 by the same formula: bit-for-bit up to one ulp.
OPTIMIZER_F32_ULPS = 1
