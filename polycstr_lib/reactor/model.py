"""The polymerisation CSTR: parameters, right-hand side, Jacobian and steady states.

Everything here is pure and float64. The model is the one of the authors' early code
(SPEC section 2): free-radical polymerisation of a monomer A started by an initiator I, in a
jacketed, perfectly mixed tank. States are ``[C_A, C_I, C_R, C_P, T]`` and inputs are
``[F_I, T_c]``; both held constant over one control interval.

Reaction and energy balances (rates in mol/(m^3 s), Arrhenius ``k = k0 exp(-E / (R T))``)::

    r_d = k_d C_I / M_I          r_p = k_p C_R C_A / M_A          r_t = k_t C_R^2
    dC_A/dt = F_A / (3600 V) - D C_A - M_A r_p
    dC_I/dt = F_I / (3600 V) - D C_I - M_I r_d
    dC_R/dt = 2 r_d - 2 r_t
    dC_P/dt = M_A r_p - D C_P
    rho c_p V dT/dt = dH r_p V - UA (T - T_c) + q rho c_p (T_f - T)

with ``q = (F_I + F_A + F_S) / (3600 rho)`` and ``D = q / V``.

The balances are written once, in :func:`rhs_terms`, over any array namespace that has
arithmetic and ``exp``: :func:`reactor_rhs` evaluates them with NumPy and
:func:`reactor_rhs_casadi` traces them into a CasADi expression for the NMPC oracle
(:mod:`polycstr_lib.reactor.nmpc`). The compiled integrator keeps its own scalar kernel with the
analytic Jacobian; tests hold all three to round-off of each other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import brentq

STATE_NAMES = ("C_A", "C_I", "C_R", "C_P", "T")
STATE_UNITS = ("kg/m^3", "kg/m^3", "mol/m^3", "kg/m^3", "K")
INPUT_NAMES = ("F_I", "T_c")
INPUT_UNITS = ("kg/h", "K")

#: Typical magnitude of each state, used to scale tolerances and relative errors.
STATE_SCALE = np.array([440.0, 10.0, 1.5e-6, 100.0, 350.0])


@dataclass(frozen=True)
class ReactorParams:
    """Physical constants of the reactor (SI units unless stated)."""

    gas_constant: float = 8.314  # R, J/(mol K)
    density: float = 1000.0  # rho, kg/m^3 (all streams and the contents)
    heat_capacity: float = 2000.0  # c_p, J/(kg K)
    heat_transfer: float = 500.0  # UA, W/K, jacket heat-transfer coefficient times area
    volume: float = 1.0  # V, m^3
    monomer_feed: float = 100.0  # F_A, kg/h, pure monomer feed
    solvent_feed: float = 80.0  # F_S, kg/h, inert solvent feed
    feed_temperature: float = 350.0  # T_f, K, of all feeds
    heat_of_propagation: float = 100e3  # dH, J/mol of monomer reacted (released)
    monomer_molar_mass: float = 0.100  # M_A, kg/mol
    initiator_molar_mass: float = 0.165  # M_I, kg/mol
    kd0: float = 1e9  # initiator decomposition pre-exponential, 1/s
    ed: float = 125e3  # decomposition activation energy, J/mol
    kp0: float = 4e4  # propagation pre-exponential, m^3/(mol s)
    ep: float = 25e3  # propagation activation energy, J/mol
    kt0: float = 1e6  # termination pre-exponential, m^3/(mol s)
    et: float = 15e3  # termination activation energy, J/mol
    feed_min: float = 0.0  # lower bound of F_I, kg/h
    feed_max: float = 2.5  # upper bound of F_I, kg/h
    coolant_min: float = 300.0  # lower bound of T_c, K
    coolant_max: float = 350.0  # upper bound of T_c, K

    def as_array(self) -> np.ndarray:
        """The constants as a float64 vector in field order (for the compiled integrator)."""
        return np.array(list(asdict(self).values()), dtype=np.float64)

    @property
    def input_low(self) -> np.ndarray:
        """Lower input bounds ``[F_I, T_c]``."""
        return np.array([self.feed_min, self.coolant_min])

    @property
    def input_high(self) -> np.ndarray:
        """Upper input bounds ``[F_I, T_c]``."""
        return np.array([self.feed_max, self.coolant_max])


def rate_constants(temperature, params: ReactorParams, exp=np.exp):
    """Arrhenius constants ``(k_d, k_p, k_t)`` at ``temperature`` (K).

    Args:
        temperature: K; a number, a NumPy array (broadcasts) or a CasADi expression.
        params: the reactor constants.
        exp: the exponential of the array namespace (``np.exp``, ``casadi.exp``).

    Returns:
        The three rate constants, each like ``temperature``.
    """
    inv_rt = 1.0 / (params.gas_constant * temperature)
    return (
        params.kd0 * exp(-params.ed * inv_rt),
        params.kp0 * exp(-params.ep * inv_rt),
        params.kt0 * exp(-params.et * inv_rt),
    )


def rhs_terms(state, inputs, params: ReactorParams, exp=np.exp) -> tuple:
    """The five balances, written once for every back end.

    Only arithmetic and ``exp`` are used, so the same code evaluates NumPy arrays
    (:func:`reactor_rhs`) and CasADi symbols (:func:`reactor_rhs_casadi`, the NMPC's model).

    Args:
        state: five components ``(C_A, C_I, C_R, C_P, T)`` (any indexable of length 5).
        inputs: two components ``(F_I (kg/h), T_c (K))``.
        params: the reactor constants (plain Python floats).
        exp: the exponential of the array namespace.

    Returns:
        ``(dC_A/dt, dC_I/dt, dC_R/dt, dC_P/dt, dT/dt)``, per second.
    """
    c_a, c_i, c_r, c_p, temp = (state[i] for i in range(5))
    feed, coolant = inputs[0], inputs[1]
    p = params
    k_d, k_p, k_t = rate_constants(temp, p, exp)
    flow = (feed + p.monomer_feed + p.solvent_feed) / (3600.0 * p.density)
    dilution = flow / p.volume
    r_d = k_d * c_i / p.initiator_molar_mass
    r_p = k_p * c_r * c_a / p.monomer_molar_mass
    r_t = k_t * c_r**2
    heat = p.density * p.heat_capacity * p.volume
    d_a = p.monomer_feed / (3600.0 * p.volume) - dilution * c_a - p.monomer_molar_mass * r_p
    d_i = feed / (3600.0 * p.volume) - dilution * c_i - p.initiator_molar_mass * r_d
    d_r = 2.0 * r_d - 2.0 * r_t
    d_p = p.monomer_molar_mass * r_p - dilution * c_p
    d_t = (
        p.heat_of_propagation * r_p * p.volume
        - p.heat_transfer * (temp - coolant)
        + flow * p.density * p.heat_capacity * (p.feed_temperature - temp)
    ) / heat
    return d_a, d_i, d_r, d_p, d_t


def reactor_rhs(state: np.ndarray, inputs: np.ndarray, params: ReactorParams) -> np.ndarray:
    """Time derivative of the state, pure and float64 (NumPy back end of :func:`rhs_terms`).

    Args:
        state: ``(..., 5)`` array ``[C_A, C_I, C_R, C_P, T]``.
        inputs: ``(..., 2)`` array ``[F_I (kg/h), T_c (K)]``, broadcastable to ``state``.
        params: the reactor constants.

    Returns:
        ``(..., 5)`` array of derivatives, per second.
    """
    state = np.moveaxis(np.asarray(state, dtype=np.float64), -1, 0)
    inputs = np.moveaxis(np.asarray(inputs, dtype=np.float64), -1, 0)
    terms = rhs_terms(state, inputs, params, np.exp)
    return np.stack(np.broadcast_arrays(*terms), axis=-1)


def reactor_rhs_casadi(state, inputs, params: ReactorParams):
    """Time derivative of the state as a CasADi expression (CasADi back end of
    :func:`rhs_terms`).

    Args:
        state: CasADi ``SX``/``MX`` column of 5 ``[C_A, C_I, C_R, C_P, T]``.
        inputs: CasADi column of 2 ``[F_I (kg/h), T_c (K)]``.
        params: the reactor constants.

    Returns:
        A 5x1 CasADi expression of the derivatives, per second.

    Raises:
        ValueError: if ``state`` or ``inputs`` has the wrong shape.
    """
    import casadi

    if state.shape != (5, 1) or inputs.shape != (2, 1):
        raise ValueError(f"state must be 5x1 and inputs 2x1, got {state.shape} and {inputs.shape}")
    return casadi.vertcat(*rhs_terms(state, inputs, params, casadi.exp))


@dataclass(frozen=True)
class SteadyState:
    """An operating point: the inputs that hold a polymer grade at a temperature."""

    state: np.ndarray  # [C_A, C_I, C_R, C_P, T], SI units as in STATE_UNITS
    inputs: np.ndarray  # [F_I (kg/h), T_c (K)]


def steady_state(
    polymer: float, temperature: float = 350.0, params: ReactorParams | None = None
) -> SteadyState:
    """Inputs and states that hold ``C_P = polymer`` at ``T = temperature`` in steady state.

    The balances reduce to one equation in the initiator feed ``F_I``: the polymer and
    monomer balances give ``C_A``, then the radical balance gives ``C_R``, the radical
    quasi-balance ``C_I``, and the initiator balance the feed that supplies it. The energy
    balance then gives the coolant temperature.

    Args:
        polymer: target ``C_P`` in kg/m^3 (must be reachable: ``0 < polymer < ~540``).
        temperature: reactor temperature in K.
        params: reactor constants (defaults to :class:`ReactorParams`).

    Returns:
        The steady state. The coolant temperature may lie outside its bounds; the caller
        decides whether such a grade is operable.

    Raises:
        ValueError: if no feed in ``[0, 50]`` kg/h holds the grade.
    """
    p = params or ReactorParams()
    k_d, k_p, k_t = (float(k) for k in rate_constants(temperature, p))

    def parts(feed: float):
        dilution = (feed + p.monomer_feed + p.solvent_feed) / (3600.0 * p.density * p.volume)
        c_a = p.monomer_feed / (3600.0 * p.volume * dilution) - polymer
        c_r = dilution * polymer / (k_p * c_a)
        c_i = p.initiator_molar_mass * k_t * c_r**2 / k_d
        return dilution, c_a, c_r, c_i

    def residual(feed: float) -> float:
        dilution, _, _, c_i = parts(feed)
        return feed / (3600.0 * p.volume) - (dilution + k_d) * c_i

    if not np.isfinite(polymer) or polymer <= 0.0:
        raise ValueError(f"polymer grade must be positive and finite, got {polymer!r}")
    lo, hi = 1e-9, 50.0
    if residual(lo) * residual(hi) > 0.0:
        raise ValueError(f"no initiator feed in [0, {hi}] kg/h holds C_P = {polymer} kg/m^3")
    feed = brentq(residual, lo, hi, xtol=1e-14, rtol=1e-14, maxiter=500)
    dilution, c_a, c_r, c_i = parts(feed)
    if c_a <= 0.0:
        raise ValueError(f"C_P = {polymer} kg/m^3 exceeds what the monomer feed can supply")
    flow = dilution * p.volume
    heat_released = p.heat_of_propagation * (k_p * c_r * c_a / p.monomer_molar_mass) * p.volume
    sensible = flow * p.density * p.heat_capacity * (p.feed_temperature - temperature)
    coolant = temperature - (heat_released + sensible) / p.heat_transfer
    state = np.array([c_a, c_i, c_r, polymer, temperature])
    return SteadyState(state=state, inputs=np.array([feed, coolant]))
