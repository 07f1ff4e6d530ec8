"""polycstr_lib: the library behind the PolyCSTR companion book.

Reactor model and batched integrator, Gymnasium environments, PI datasets (Minari),
offline agents, cost models and the convex safety layer.
"""

from polycstr_lib.reactor.env import PolyCSTREnv, PolyCSTRVectorEnv, register_envs
from polycstr_lib.reactor.model import ReactorParams, reactor_rhs, steady_state
from polycstr_lib.reactor.scenarios import SCENARIOS, get_scenario

__version__ = "0.1.0"

register_envs()

__all__ = [
    "SCENARIOS",
    "PolyCSTREnv",
    "PolyCSTRVectorEnv",
    "ReactorParams",
    "__version__",
    "get_scenario",
    "reactor_rhs",
    "register_envs",
    "steady_state",
]
