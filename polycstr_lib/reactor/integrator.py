"""A batched stiff integrator for the reactor: N tanks over one control interval at once.

Method: the extrapolated linearly implicit Euler scheme (the idea behind Deuflhard's LIMEX
and Hairer & Wanner's SEULEX). One basic step of length ``H`` is taken ``n_j`` times with
substeps ``h = H / n_j``, each substep solving ``(I - h J) d = h f(y)`` with the Jacobian
``J`` frozen at the start of the basic step, for ``n_j = 1, 2, ..., K``. The error of this
scheme expands in powers of ``h``, so Aitken-Neville extrapolation over the ``K`` results
gives order ``K``; the difference between the last two extrapolated values is the error
estimate that adapts ``H``. Linearly implicit Euler is L-stable, so the fast radical mode
(time constants from seconds down to a tenth of a second in a runaway) never limits ``H``.

Each reactor has its own adaptive step, so the result for one reactor does not depend on
the others in the batch: a batch of N gives bit-for-bit the trajectories of N single runs.
The right-hand side and the analytic Jacobian are written out again here, in scalar form,
for the compiled kernel; tests check them against :func:`polycstr_lib.reactor.model.reactor_rhs`
and against scipy's Radau at tight tolerance.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from polycstr_lib.reactor.model import STATE_SCALE, ReactorParams

#: Default relative tolerance of the adaptive step (the accuracy test holds at 1e-4 vs Radau).
DEFAULT_RTOL = 1e-7
#: Number of extrapolation stages (order of the scheme).
DEFAULT_STAGES = 5
_ABS_FLOOR = 1e-2  # absolute tolerance = rtol * _ABS_FLOOR * STATE_SCALE


@njit(cache=True, inline="always")
def _rhs_and_jac(y, feed, coolant, p, f, jac, want_jac):
    (gas, rho, cp, ua, vol, f_a, f_s, t_f, d_h, m_a, m_i, kd0, ed, kp0, ep, kt0, et) = p[:17]
    c_a, c_i, c_r, c_p, temp = y[0], y[1], y[2], y[3], y[4]
    inv_rt = 1.0 / (gas * temp)
    k_d = kd0 * np.exp(-ed * inv_rt)
    k_p = kp0 * np.exp(-ep * inv_rt)
    k_t = kt0 * np.exp(-et * inv_rt)
    dilution = (feed + f_a + f_s) / (3600.0 * rho) / vol
    heat_gain = d_h / (m_a * rho * cp)  # K per (kg/m^3 of monomer reacted)
    cooling = ua / (rho * cp * vol)
    prop = k_p * c_r * c_a  # = M_A r_p, kg/(m^3 s)
    f[0] = f_a / (3600.0 * vol) - dilution * c_a - prop
    f[1] = feed / (3600.0 * vol) - dilution * c_i - k_d * c_i
    f[2] = 2.0 * k_d * c_i / m_i - 2.0 * k_t * c_r * c_r
    f[3] = prop - dilution * c_p
    f[4] = heat_gain * prop - cooling * (temp - coolant) + dilution * (t_f - temp)
    if want_jac:
        inv_rt2 = inv_rt / temp  # 1 / (R T^2)
        dk_d = k_d * ed * inv_rt2
        dk_p = k_p * ep * inv_rt2
        dk_t = k_t * et * inv_rt2
        for i in range(5):
            for j in range(5):
                jac[i, j] = 0.0
        jac[0, 0] = -dilution - k_p * c_r
        jac[0, 2] = -k_p * c_a
        jac[0, 4] = -dk_p * c_r * c_a
        jac[1, 1] = -dilution - k_d
        jac[1, 4] = -dk_d * c_i
        jac[2, 1] = 2.0 * k_d / m_i
        jac[2, 2] = -4.0 * k_t * c_r
        jac[2, 4] = 2.0 * dk_d * c_i / m_i - 2.0 * dk_t * c_r * c_r
        jac[3, 0] = k_p * c_r
        jac[3, 2] = k_p * c_a
        jac[3, 3] = -dilution
        jac[3, 4] = dk_p * c_r * c_a
        jac[4, 0] = heat_gain * k_p * c_r
        jac[4, 2] = heat_gain * k_p * c_a
        jac[4, 4] = heat_gain * dk_p * c_r * c_a - cooling - dilution


@njit(cache=True, inline="always")
def _lu_factor(a, piv):
    n = a.shape[0]
    for k in range(n):
        best = k
        big = abs(a[k, k])
        for i in range(k + 1, n):
            if abs(a[i, k]) > big:
                big = abs(a[i, k])
                best = i
        piv[k] = best
        if best != k:
            for j in range(n):
                a[k, j], a[best, j] = a[best, j], a[k, j]
        inv = 1.0 / a[k, k]
        for i in range(k + 1, n):
            a[i, k] *= inv
            for j in range(k + 1, n):
                a[i, j] -= a[i, k] * a[k, j]


@njit(cache=True, inline="always")
def _lu_solve(a, piv, b):
    n = a.shape[0]
    for k in range(n):
        if piv[k] != k:
            b[k], b[piv[k]] = b[piv[k]], b[k]
    for i in range(n):
        for j in range(i):
            b[i] -= a[i, j] * b[j]
    for i in range(n - 1, -1, -1):
        for j in range(i + 1, n):
            b[i] -= a[i, j] * b[j]
        b[i] /= a[i, i]


@njit(cache=True)
def _advance_one(y, feed, coolant, dt, h, p, rtol, atol, stages, table, f0, f, jac, mat, piv, work):
    """Advance one reactor in place by ``dt``; returns (next step guess, status, steps)."""
    t = 0.0
    steps = 0
    while t < dt * (1.0 - 1e-14):
        if steps > 20000 or h < 1e-9 * dt:
            return h, 1, steps
        h = min(h, dt - t)
        _rhs_and_jac(y, feed, coolant, p, f0, jac, True)
        for j in range(stages):
            n = j + 1
            hs = h / n
            for r in range(5):
                for c in range(5):
                    mat[r, c] = -hs * jac[r, c]
                mat[r, r] += 1.0
            _lu_factor(mat, piv)
            for r in range(5):
                table[j, 0, r] = y[r]
            for i in range(n):
                if i == 0:
                    for r in range(5):
                        work[r] = hs * f0[r]
                else:
                    for r in range(5):
                        work[r] = table[j, 0, r]
                    _rhs_and_jac(work, feed, coolant, p, f, jac, False)
                    for r in range(5):
                        work[r] = hs * f[r]
                _lu_solve(mat, piv, work)
                for r in range(5):
                    table[j, 0, r] += work[r]
            for k in range(1, j + 1):
                ratio = (j + 1.0) / (j + 1.0 - k) - 1.0
                for r in range(5):
                    table[j, k, r] = (
                        table[j, k - 1, r] + (table[j, k - 1, r] - table[j - 1, k - 1, r]) / ratio
                    )
        last = stages - 1
        err = 0.0
        finite = True
        for r in range(5):
            new = table[last, last, r]
            if not np.isfinite(new):
                finite = False
            scale = atol[r] + rtol * max(abs(y[r]), abs(new))
            e = (new - table[last, last - 1, r]) / scale
            err += e * e
        err = np.sqrt(err / 5.0)
        steps += 1
        if finite and err <= 1.0:
            t += h
            for r in range(5):
                y[r] = table[last, last, r]
            factor = 4.0 if err == 0.0 else min(4.0, max(0.2, 0.9 * err ** (-1.0 / stages)))
            h = h * factor
        elif finite:
            h = h * max(0.1, 0.9 * err ** (-1.0 / stages))
        else:
            h = h * 0.25
    return h, 0, steps


@njit(cache=True)
def _advance_batch(states, inputs, dt, step_guess, p, rtol, atol, stages):
    n = states.shape[0]
    out = states.copy()
    next_guess = np.empty(n)
    status = np.zeros(n, dtype=np.int64)
    steps = np.zeros(n, dtype=np.int64)
    table = np.empty((stages, stages, 5))
    f0 = np.empty(5)
    f = np.empty(5)
    jac = np.empty((5, 5))
    mat = np.empty((5, 5))
    piv = np.empty(5, dtype=np.int64)
    work = np.empty(5)
    y = np.empty(5)
    for b in range(n):
        for r in range(5):
            y[r] = states[b, r]
        h, s, k = _advance_one(
            y,
            inputs[b, 0],
            inputs[b, 1],
            dt,
            step_guess[b],
            p,
            rtol,
            atol,
            stages,
            table,
            f0,
            f,
            jac,
            mat,
            piv,
            work,
        )
        for r in range(5):
            out[b, r] = y[r]
        next_guess[b] = h
        status[b] = s
        steps[b] = k
    return out, next_guess, status, steps


class IntegrationError(RuntimeError):
    """The adaptive integrator could not advance a reactor (step size collapsed)."""


def advance(
    states: np.ndarray,
    inputs: np.ndarray,
    dt: float,
    params: ReactorParams | None = None,
    step_guess: np.ndarray | None = None,
    rtol: float = DEFAULT_RTOL,
    stages: int = DEFAULT_STAGES,
    return_stats: bool = False,
):
    """Advance N reactors by ``dt`` seconds with inputs held constant.

    Args:
        states: ``(N, 5)`` float64 states ``[C_A, C_I, C_R, C_P, T]``.
        inputs: ``(N, 2)`` float64 inputs ``[F_I (kg/h), T_c (K)]``.
        dt: interval length in seconds.
        params: reactor constants.
        step_guess: ``(N,)`` initial internal step per reactor (s); ``dt`` when omitted.
            Pass back the returned guess to save work on the next interval.
        rtol: relative tolerance of the adaptive step.
        stages: extrapolation stages (the order of the method), 2 to 8.
        return_stats: also return the number of basic steps per reactor.

    Returns:
        ``(new_states, next_step_guess)`` and, with ``return_stats``, the step counts.

    Raises:
        IntegrationError: when a reactor cannot be advanced (the message names it).
    """
    params = params or ReactorParams()
    states = np.ascontiguousarray(states, dtype=np.float64)
    inputs = np.ascontiguousarray(inputs, dtype=np.float64)
    if states.ndim != 2 or states.shape[1] != 5:
        raise ValueError(f"states must have shape (N, 5), got {states.shape}")
    if inputs.shape != (states.shape[0], 2):
        raise ValueError(f"inputs must have shape ({states.shape[0]}, 2), got {inputs.shape}")
    if not 2 <= stages <= 8:
        raise ValueError(f"stages must be in [2, 8], got {stages}")
    if step_guess is None:
        step_guess = np.full(states.shape[0], float(dt))
    atol = rtol * _ABS_FLOOR * STATE_SCALE
    out, guess, status, steps = _advance_batch(
        states,
        inputs,
        float(dt),
        np.asarray(step_guess, dtype=np.float64),
        params.as_array(),
        float(rtol),
        atol,
        int(stages),
    )
    if status.any():
        bad = np.flatnonzero(status)
        raise IntegrationError(
            f"integration failed for reactor(s) {bad[:10].tolist()} "
            f"(states {states[bad[0]].tolist()}, inputs {inputs[bad[0]].tolist()})"
        )
    return (out, guess, steps) if return_stats else (out, guess)


def rhs_compiled(state: np.ndarray, inputs: np.ndarray, params: ReactorParams | None = None):
    """The compiled kernel's right-hand side and Jacobian at one point (for tests)."""
    params = params or ReactorParams()
    f = np.empty(5)
    jac = np.empty((5, 5))
    _rhs_and_jac(
        np.asarray(state, dtype=np.float64),
        float(inputs[0]),
        float(inputs[1]),
        params.as_array(),
        f,
        jac,
        True,
    )
    return f, jac
