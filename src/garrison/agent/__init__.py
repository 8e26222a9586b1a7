"""The Garrison endpoint agent: scans with the engine, removes what it finds and reports to the central server.

So far this package holds the agent's two durable stores, which are pure of network:

- :mod:`garrison.agent.outbox`: the on-disk event queue (events are deleted only after the server acknowledged
  them; survives ``kill -9``, a full disk and a server that is away for days);
- :mod:`garrison.agent.quarantine`: the encrypted quarantine store and the delete action.

The daemon (composition root), the HTTP client, the scheduler, real-time protection, the walker and the updater
come later and are built on these. The agent uses the engine and the protocol and never imports the server.
"""
