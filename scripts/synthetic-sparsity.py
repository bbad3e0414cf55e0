#!/usr/bin/env python3
"""Prints a CSV (S,N,D,loss) of Frantar et al. 2023's sparsity law at known constants, with
0.3% multiplicative noise (seed 5): four sparsities x five sizes x three budgets, for trying
`scalelab fit --law sparsity`. The constants are those of the fitter's own test
(crates/analysis/src/law.rs): a_S 30, b_S 1.2, c_S 10, b_N 0.35, a_D 400, b_D 0.3, c 1.7.

    python3 scripts/synthetic-sparsity.py > sparse.csv
    scalelab fit --law sparsity --input sparse.csv --bootstrap 100
"""
import math
import random

random.seed(5)
a_s, b_s, c_s, b_n, a_d, b_d, c = 30.0, 1.2, 10.0, 0.35, 400.0, 0.3, 1.7
print("S,N,D,loss")
for s in (0, 0.5, 0.75, 0.875):
    for n in (1e6, 3e6, 1e7, 3e7, 1e8):
        for d in (1e8, 1e9, 1e10):
            loss = (a_s * (1 - s) ** b_s + c_s) * n ** -b_n + a_d * d ** -b_d + c
            print(f"{s},{n:g},{d:g},{loss * math.exp(0.003 * random.gauss(0, 1)):.6f}")
