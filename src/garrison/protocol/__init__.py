"""Wire schemas shared by the agent and the server (pydantic only), versioned by ``PROTOCOL_VERSION``.

Fields are only ever added, with defaults, so that agents one version behind keep working.
"""

PROTOCOL_VERSION = 1
