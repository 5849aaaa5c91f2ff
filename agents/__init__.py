"""Search agents and the cost-budget harness; installed as ``blox_env.agents``."""
