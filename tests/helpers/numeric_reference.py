"""Float64 helpers the tests compare against (no JAX)."""
import numpy as np


def finite_difference_grads(loss, args, h=1e-6):
    """Central differences in float64 of loss(*args) w.r.t. every element of every arg."""
    grads = []
    for k, arg in enumerate(args):
        arg = np.asarray(arg, np.float64)
        grad = np.zeros_like(arg)
        for idx in np.ndindex(arg.shape):
            up, down = arg.copy(), arg.copy()
            up[idx] += h
            down[idx] -= h
            grad[idx] = (loss(*args[:k], up, *args[k + 1:]) - loss(*args[:k], down, *args[k + 1:])) / (2 * h)
        grads.append(grad)
    return grads
