"""How far apart two numbers may be and still be the same result."""

# What two float32 paths to the same PRM scores may differ by: rounding (about 1e-6 measured
# on the tiny PRMs, whose scores spread over (0, 1)); a broken path (a mask, a cache) moves
# scores by far more.
FLOAT32 = 5e-6
