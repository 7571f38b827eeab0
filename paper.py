"""The author's published numbers (Lu 2019), as data: one seed per variant, 100 epochs, keyed
{dataset: {variant: ...}}. docs/method.md ("The author's numbers") says where each was read
and under which protocol. The tables and the figures take them from here only."""

# Running train accuracy (%) at the end of the first epoch, read off the paper's figures.
FIRST_EPOCH = {"mnist": {"original": 61, "uncertainty": 62, "intrinsic": 63.5, "both": 64},
               "translated": {"original": 30, "uncertainty": 31, "intrinsic": 33, "both": 35}}

# Test accuracy (%) after N glimpses, {N: accuracy}, under the author's protocol (M = 10, the
# epoch-100 checkpoint): N = 1 and 6 as the released notebook prints them, N = 30 and 50 read
# off the paper's figure.
FIXED = {"mnist": {"original": {1: 57.49, 6: 99.12, 30: 14, 50: 14},
                   "uncertainty": {1: 9.58, 6: 99.05, 30: 10, 50: 10},
                   "intrinsic": {1: 26.94, 6: 99.08},
                   "both": {1: 11.57, 6: 98.99, 30: 98.5, 50: 98.5}}}

# The paper's text: original RAM without Monte Carlo sampling (M = 1), {N: accuracy %}.
FIXED_M1 = {"mnist": {"original": {6: 98.3}}}

# The dynamic number of glimpses, {eps: (mean glimpses, accuracy %)}: the released rule under
# the author's protocol, as the released notebook prints them.
DYNAMIC = {"mnist": {"both": {0: (1.0, 11.57), 0.01: (1.76, 53.14), 0.15: (3.19, 93.68),
                              0.3: (4.81, 97.92), 0.4: (8.99, 98.73), 0.45: (36.70, 97.47)},
                     "uncertainty": {0: (1.0, 9.58), 0.1: (1.90, 67.14), 0.2: (2.17, 75.77),
                                     0.5: (2.48, 79.86), 0.8: (2.89, 90.75), 1: (3.10, 95.88),
                                     5: (5.66, 99.02), 10: (6.43, 99.08)}}}
