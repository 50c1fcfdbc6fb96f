"""The paper's texts (arXiv 2310.08588, appendix A.3), shared by the simulator, agents, models and data.

    api        the 16 API functions, the state and relation vocabulary, the system message
    response   the response format: Explain, Subtasks, Code, Target States (`parse_response`)
    message    the environment message: Observed Objects/Relations, Inventory, Task Goal, ... (`EnvMessage`)
    code       the one code checker: restricted compile policy, runtime guards, `check_code`

Nothing here imports the simulator, so a model, a trainer or a validator reads these formats alone.
"""

from octopus.protocol.api import (ACT_PARAMS, API_FUNCTIONS, API_NAMES, BINARY_RELATIONS, CLOSING_REQUEST,
                                  RESPONSE_FORMAT, STATE_ALIASES, UNARY_STATES, ApiFunction, render_api,
                                  system_message)
from octopus.protocol.code import check_code
from octopus.protocol.message import EnvMessage, EnvMessageFormatError, ObservedObject, parse_env_message
from octopus.protocol.response import Response, ResponseFormatError, TargetState, parse_response

__all__ = ["ACT_PARAMS", "API_FUNCTIONS", "API_NAMES", "BINARY_RELATIONS", "CLOSING_REQUEST", "RESPONSE_FORMAT",
           "STATE_ALIASES", "UNARY_STATES", "ApiFunction", "render_api", "system_message", "check_code",
           "EnvMessage", "EnvMessageFormatError", "ObservedObject", "parse_env_message", "Response",
           "ResponseFormatError", "TargetState", "parse_response"]
